// Reading a term map in one streaming pass: the file's bytes are inflated chunk by chunk
// (zstd, gzip or none; Inflater) and fed through an input iterator (ChunkIterator) to
// nlohmann's SAX parser, which hands each key and value to TermMapReader; only the fields
// matching and embedding need are kept (docs/ONTOLOGY.md "Term maps"). At most one 64 KiB
// chunk of compressed and one of inflated bytes are held at a time.
#include "ontology/term_map.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "ontology/ancestor_list.h"

namespace cellcube::ontology {
namespace {

constexpr size_t kChunk = size_t{1} << 16;

// The raw bytes: a file read in chunks, or a buffer in memory.
class Source {
 public:
  virtual ~Source() = default;
  // Up to `n` bytes into `to`; 0 at the end; -1 on a read error.
  virtual long Read(char* to, size_t n) = 0;
};

class FileSource : public Source {
 public:
  explicit FileSource(FILE* f) : f_(f) {}
  ~FileSource() override { std::fclose(f_); }
  long Read(char* to, size_t n) override {
    const size_t got = std::fread(to, 1, n, f_);
    if (got == 0 && std::ferror(f_)) return -1;
    return static_cast<long>(got);
  }

 private:
  FILE* f_;
};

class MemorySource : public Source {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  long Read(char* to, size_t n) override {
    const size_t got = std::min(n, bytes_.size() - at_);
    std::memcpy(to, bytes_.data() + at_, got);
    at_ += got;
    return static_cast<long>(got);
  }

 private:
  std::string_view bytes_;
  size_t at_ = 0;
};

enum class Codec { kPlain, kGzip, kZstd };

// The inflated bytes, chunk by chunk. A failure ends them early and is kept in error()
// (the parser then reports the JSON as cut short; the error says why).
class Inflater {
 public:
  Inflater(std::unique_ptr<Source> source, Codec codec, std::string first)
      : source_(std::move(source)), codec_(codec), in_(std::move(first)), out_(kChunk, '\0') {
    in_at_ = 0;
    if (codec_ == Codec::kGzip) {
      std::memset(&z_, 0, sizeof z_);
      if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) error_ = "zlib cannot start";
    } else if (codec_ == Codec::kZstd) {
      zstd_ = ZSTD_createDStream();
      if (!zstd_) error_ = "zstd cannot start";
    }
  }
  ~Inflater() {
    if (codec_ == Codec::kGzip) inflateEnd(&z_);
    if (zstd_) ZSTD_freeDStream(zstd_);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  const std::string& error() const { return error_; }
  // The next chunk; empty at the end (or on an error).
  std::string_view Next() { return {out_.data(), Fill()}; }

 private:
  // More compressed input when what is held is used up; false at the end (or an error).
  bool Refill() {
    if (in_at_ < in_.size()) return true;
    if (eof_) return false;
    in_.resize(kChunk);
    const long got = source_->Read(in_.data(), in_.size());
    if (got < 0) {
      error_ = std::string("read failed: ") + std::strerror(errno);
      return false;
    }
    in_.resize(static_cast<size_t>(got));
    in_at_ = 0;
    eof_ = got == 0;
    return got > 0;
  }

  size_t Fill() {
    if (!error_.empty() || done_) return 0;
    switch (codec_) {
      case Codec::kPlain: {
        if (!Refill()) return 0;
        const size_t n = std::min(out_.size(), in_.size() - in_at_);
        std::memcpy(out_.data(), in_.data() + in_at_, n);
        in_at_ += n;
        return n;
      }
      case Codec::kGzip:
        return FillGzip();
      case Codec::kZstd:
        return FillZstd();
    }
    return 0;
  }

  // A codec that filled the whole output last time may hold more output without new
  // input (more_out_): it is asked again before more input is read.
  size_t FillGzip() {
    for (;;) {
      if (!more_out_ && !Refill()) {
        if (error_.empty()) error_ = "the gzip data ends early";
        return 0;
      }
      z_.next_in = reinterpret_cast<Bytef*>(in_.data() + in_at_);
      z_.avail_in = static_cast<uInt>(in_.size() - in_at_);
      z_.next_out = reinterpret_cast<Bytef*>(out_.data());
      z_.avail_out = static_cast<uInt>(out_.size());
      const int rc = inflate(&z_, Z_NO_FLUSH);
      in_at_ = in_.size() - z_.avail_in;
      const size_t n = out_.size() - z_.avail_out;
      more_out_ = z_.avail_out == 0;
      if (rc == Z_STREAM_END) {
        // A gzip file may hold several members (concatenated files), read as one
        // stream as `gzip -d` does; the stream ends with the input.
        // (A read error is kept in error_ and ends the stream at the next Fill.)
        more_out_ = false;
        if (!Refill()) {
          done_ = true;
          return n;
        }
        if (inflateReset(&z_) != Z_OK) {
          error_ = "zlib cannot restart";
          return 0;
        }
        if (n > 0) return n;
        continue;
      }
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        error_ = "the gzip data does not inflate (damaged)";
        return 0;
      }
      if (n > 0) return n;
    }
  }

  size_t FillZstd() {
    for (;;) {
      if (!more_out_ && in_at_ >= in_.size() && !Refill()) {
        if (error_.empty() && !frame_done_) error_ = "the zstd data ends early";
        return 0;
      }
      ZSTD_inBuffer in{in_.data(), in_.size(), in_at_};
      ZSTD_outBuffer out{out_.data(), out_.size(), 0};
      const size_t rc = ZSTD_decompressStream(zstd_, &out, &in);
      in_at_ = in.pos;
      if (ZSTD_isError(rc)) {
        error_ = std::string("the zstd data does not decompress (") + ZSTD_getErrorName(rc) + ")";
        return 0;
      }
      frame_done_ = rc == 0;
      more_out_ = out.pos == out.size;
      if (out.pos > 0) return out.pos;
    }
  }

  std::unique_ptr<Source> source_;
  Codec codec_;
  std::string in_;
  size_t in_at_ = 0;
  std::string out_;
  bool eof_ = false, done_ = false, frame_done_ = false, more_out_ = false;
  z_stream z_{};
  ZSTD_DStream* zstd_ = nullptr;
  std::string error_;
};

// The inflated bytes as an input iterator, which nlohmann's parser reads through a
// pointer compare and increment per byte (about half the cost of an std::istream's
// per-byte calls); the end is the default-constructed iterator.
class ChunkIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  ChunkIterator() = default;
  explicit ChunkIterator(Inflater* inflater) : inflater_(inflater) { NextChunk(); }
  reference operator*() const { return *at_; }
  ChunkIterator& operator++() {
    if (++at_ == end_) NextChunk();
    return *this;
  }
  ChunkIterator operator++(int) {
    ChunkIterator before = *this;
    ++*this;
    return before;
  }
  bool operator==(const ChunkIterator& other) const { return at_ == other.at_; }

 private:
  void NextChunk() {
    const std::string_view chunk = inflater_->Next();
    at_ = chunk.empty() ? nullptr : chunk.data();  // nullptr: the end
    end_ = at_ == nullptr ? nullptr : chunk.data() + chunk.size();
  }

  Inflater* inflater_ = nullptr;
  const char* at_ = nullptr;
  const char* end_ = nullptr;
};

Codec CodecOf(std::string_view head) {
  if (head.size() >= 4 && static_cast<unsigned char>(head[0]) == 0x28 &&
      static_cast<unsigned char>(head[1]) == 0xB5 && static_cast<unsigned char>(head[2]) == 0x2F &&
      static_cast<unsigned char>(head[3]) == 0xFD)
    return Codec::kZstd;
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x1F &&
      static_cast<unsigned char>(head[1]) == 0x8B)
    return Codec::kGzip;
  return Codec::kPlain;
}

// The SAX handler: {id: {"label": s, "deprecated": b, "replaced_by": s, "synonyms": [s],
// "ancestors": {id: n}, anything else skipped}}. The kept fields are type-checked where
// they arrive (null allowed for all but the label), so a file of another shape is named
// as such instead of yielding terms with silently missing parts.
class TermMapReader : public nlohmann::json_sax<nlohmann::json> {
 public:
  struct Raw {
    std::string id;
    std::string label;
    bool has_label = false;
    bool deprecated = false;
    std::string replaced_by;
    std::vector<std::pair<std::string, int32_t>> ancestors;
    std::vector<std::string> synonyms;
  };
  std::vector<Raw> terms;  // as the file lists them
  std::string error;

  bool null() override { return Value(Kind::kNull); }
  bool boolean(bool v) override {
    if (!Value(Kind::kBool)) return false;
    if (depth_ == 2 && field_ == "deprecated") current_->deprecated = v;
    return true;
  }
  bool number_integer(number_integer_t v) override {
    if (!Value(Kind::kInt)) return false;
    return depth_ == 3 && in_ancestors_ ? Ancestor(v < 0 ? -1.0 : static_cast<double>(v)) : true;
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (!Value(Kind::kInt)) return false;
    return depth_ == 3 && in_ancestors_ ? Ancestor(static_cast<double>(v)) : true;
  }
  bool number_float(number_float_t, const string_t&) override { return Value(Kind::kFloat); }
  bool string(string_t& v) override {
    if (!Value(Kind::kString)) return false;
    // nlohmann's json_sax: "It is safe to move the passed string value".
    if (depth_ == 2 && field_ == "label") {
      current_->label = std::move(v);
      current_->has_label = true;
    } else if (depth_ == 2 && field_ == "replaced_by") {
      current_->replaced_by = std::move(v);
    } else if (depth_ == 3 && in_synonyms_) {
      current_->synonyms.push_back(std::move(v));
    }
    return true;
  }
  bool binary(binary_t&) override { return Value(Kind::kOther); }
  bool start_object(std::size_t) override {
    if (!Value(Kind::kObject)) return false;
    if (depth_ == 1) {
      terms.emplace_back();  // current_ stays valid: the next emplace is the next term's
      terms.back().id = id_;
      current_ = &terms.back();
    }
    in_ancestors_ = depth_ == 2 && field_ == "ancestors";
    ++depth_;
    return true;
  }
  bool end_object() override {
    --depth_;
    if (depth_ == 2) in_ancestors_ = false;
    if (depth_ == 1 && !current_->has_label) return FailTerm("has no label");
    return true;
  }
  bool start_array(std::size_t) override {
    if (!Value(Kind::kArray)) return false;
    in_synonyms_ = depth_ == 2 && field_ == "synonyms";
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    if (depth_ == 2) in_synonyms_ = false;
    return true;
  }
  bool key(string_t& k) override {
    if (depth_ == 1) {
      id_ = std::move(k);  // safe, as in string()
    } else if (depth_ == 2) {
      field_ = k;
    } else if (depth_ == 3 && in_ancestors_) {
      ancestor_ = std::move(k);  // safe, as in string()
    }
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    if (error.empty())
      error = "bad JSON at byte " + std::to_string(position) + " (" + ShortWhat(e.what()) + ")";
    return false;
  }

 private:
  enum class Kind { kNull, kBool, kInt, kFloat, kString, kObject, kArray, kOther };

  static std::string ShortWhat(const char* what) {
    std::string s = what;
    const auto colon = s.rfind(": ");
    return colon == std::string::npos ? s : s.substr(colon + 2);
  }
  bool Fail(const std::string& why) {
    if (error.empty()) error = why;
    return false;
  }
  // The message is built only on failure: the checks run for every value.
  bool FailTerm(const char* why) { return Fail("term '" + id_ + "' " + why); }
  // Whether a value of kind `k` may stand where the parser is (depth_ containers open).
  bool Value(Kind k) {
    switch (depth_) {
      case 0:
        return k == Kind::kObject || Fail("a term map is one JSON object of terms");
      case 1:
        return k == Kind::kObject || FailTerm("is not an object");
      case 2:
        return FieldValue(k);
      case 3:
        if (in_ancestors_ && k != Kind::kInt)
          return FailTerm("has an ancestor distance that is not a whole number");
        if (in_synonyms_ && k != Kind::kString)
          return FailTerm("has a synonym that is not a string");
        return true;
      default:
        return true;  // inside a field nobody keeps
    }
  }
  // A kept field's value: its expected type, or null for the optional ones.
  bool FieldValue(Kind k) {
    const bool null = k == Kind::kNull;
    if (field_ == "label" && k != Kind::kString)
      return FailTerm("has a label that is not a string");
    if (field_ == "deprecated" && k != Kind::kBool && !null)
      return FailTerm("has a 'deprecated' that is not true or false");
    if (field_ == "replaced_by" && k != Kind::kString && !null)
      return FailTerm("has a 'replaced_by' that is not a term id");
    if (field_ == "ancestors" && k != Kind::kObject && !null)
      return FailTerm("has 'ancestors' that are not an object of id: distance");
    if (field_ == "synonyms" && k != Kind::kArray && !null)
      return FailTerm("has 'synonyms' that are not a list of strings");
    return true;
  }
  bool Ancestor(double distance) {
    if (!(distance >= 0 && distance < 1e9)) return FailTerm("has a bad ancestor distance");
    current_->ancestors.emplace_back(std::move(ancestor_), static_cast<int32_t>(distance));
    return true;
  }

  int depth_ = 0;
  bool in_ancestors_ = false, in_synonyms_ = false;
  std::string id_, field_, ancestor_;
  Raw* current_ = nullptr;
};

std::string BaseName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "CL-ontology-v2026-03-26.json.zst" -> "v2026-03-26": from a "-v" followed by a digit
// to the next '.' (a digit, so that "my-vocabulary.json" has no version "vocabulary").
std::string VersionOf(const std::string& path) {
  const std::string base = BaseName(path);
  for (auto at = base.find("-v"); at != std::string::npos; at = base.find("-v", at + 1)) {
    if (at + 2 >= base.size() || base[at + 2] < '0' || base[at + 2] > '9') continue;
    const auto end = base.find('.', at);
    return end == std::string::npos ? "" : base.substr(at + 1, end - at - 1);
  }
  return "";
}

// The prefix most ids share ("CL" of "CL:0000084").
std::string NameOf(const std::vector<std::string>& ids) {
  std::unordered_map<std::string, size_t> count;
  for (const auto& id : ids) ++count[id.substr(0, id.find(':'))];
  std::string best;
  size_t most = 0;
  for (const auto& [prefix, n] : count)
    if (n > most || (n == most && prefix < best)) best = prefix, most = n;
  return best;
}

// The terms ascending by id, ancestors and replaced_by resolved to indices (ids not in
// the map dropped, or -1). An id given twice is an error (the message, without the file).
Result<TermMap> Assemble(std::vector<TermMapReader::Raw>&& raw, const std::string& source) {
  std::vector<int32_t> order(raw.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
    return raw[static_cast<size_t>(x)].id < raw[static_cast<size_t>(y)].id;
  });
  TermMap m;
  m.source = source;
  m.version = VersionOf(source);
  m.ids.reserve(raw.size());  // no reallocation: `index` views these strings
  std::unordered_map<std::string_view, int32_t> index(raw.size() * 2);
  for (int32_t r : order) {
    std::string& id = raw[static_cast<size_t>(r)].id;
    if (!m.ids.empty() && m.ids.back() == id)
      return Status::InvalidArgument("term '" + id + "' appears twice");
    m.ids.push_back(std::move(id));
    index.emplace(m.ids.back(), static_cast<int32_t>(m.ids.size() - 1));
  }
  for (int32_t r : order) {
    TermMapReader::Raw& t = raw[static_cast<size_t>(r)];
    const auto self = static_cast<int32_t>(m.labels.size());
    m.labels.push_back(std::move(t.label));
    m.deprecated.push_back(t.deprecated ? 1 : 0);
    auto rb = index.find(t.replaced_by);
    m.replaced_by.push_back(t.replaced_by.empty() || rb == index.end() ? -1 : rb->second);
    std::vector<std::pair<int32_t, int32_t>> ancestors;
    for (const auto& [a, d] : t.ancestors) {
      auto it = index.find(a);
      if (it != index.end() && it->second != self) ancestors.emplace_back(it->second, d);
    }
    AppendAncestors(std::move(ancestors), &m.ancestors, &m.ancestor_distance, &m.ancestor_begin);
    for (auto& syn : t.synonyms) m.synonyms.push_back(std::move(syn));
    m.synonym_begin.push_back(static_cast<int64_t>(m.synonyms.size()));
  }
  m.name = NameOf(m.ids);
  return m;
}

Result<TermMap> Parse(std::unique_ptr<Source> source, const std::string& name) {
  std::string head(4, '\0');
  const long got = source->Read(head.data(), head.size());
  if (got < 0) return Status::IoError("cannot read the term map '" + name + "'");
  head.resize(static_cast<size_t>(got));
  Inflater inflater(std::move(source), CodecOf(head), head);
  TermMapReader reader;
  const bool ok = nlohmann::json::sax_parse(ChunkIterator(&inflater), ChunkIterator(), &reader,
                                            nlohmann::json::input_format_t::json,
                                            /*strict=*/true);
  const std::string why = !inflater.error().empty() ? inflater.error() : reader.error;
  if (!ok || !why.empty())
    return Status::InvalidArgument("'" + name + "' is not an ontology term map: " +
                                   (why.empty() ? std::string("bad JSON") : why) +
                                   " (expected cellxgene-ontology-guide's JSON, plain, .gz or "
                                   ".zst)");
  if (reader.terms.empty())
    return Status::InvalidArgument("'" + name + "' is not an ontology term map: it has no terms");
  auto map = Assemble(std::move(reader.terms), name);
  if (!map.ok())
    return Status::InvalidArgument("'" + name +
                                   "' is not an ontology term map: " + map.status().message());
  return map;
}

}  // namespace

int32_t TermMap::Find(std::string_view id) const {
  auto it = std::lower_bound(ids.begin(), ids.end(), id,
                             [](const std::string& a, std::string_view b) { return a < b; });
  return it != ids.end() && *it == id ? static_cast<int32_t>(it - ids.begin()) : -1;
}

Result<TermMap> LoadTermMap(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    return errno == ENOENT ? Status::NotFound("no term map '" + path + "' (no such file)")
                           : Status::IoError("cannot open the term map '" + path +
                                             "': " + std::strerror(errno));
  return Parse(std::make_unique<FileSource>(f), path);
}

Result<TermMap> ParseTermMap(std::string_view bytes, const std::string& source) {
  return Parse(std::make_unique<MemorySource>(bytes), source);
}

}  // namespace cellcube::ontology
