// Reading a term map in one streaming pass: the file's bytes are inflated chunk by chunk
// by a std::streambuf (zstd, gzip or none) and fed to nlohmann's SAX parser, which hands
// each key and value to TermMapReader; only the fields matching and embedding need are
// kept (docs/ONTOLOGY.md "Term maps").
#include "ontology/term_map.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <istream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <streambuf>
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

// A read-only stream of the inflated bytes. A failure ends the stream early and is kept
// in error() (the parser then reports the JSON as cut short; the error says why).
class InflatingBuf : public std::streambuf {
 public:
  InflatingBuf(std::unique_ptr<Source> source, Codec codec, std::string first)
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
  ~InflatingBuf() override {
    if (codec_ == Codec::kGzip) inflateEnd(&z_);
    if (zstd_) ZSTD_freeDStream(zstd_);
  }
  const std::string& error() const { return error_; }

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    const size_t n = Fill();
    if (n == 0) return traits_type::eof();
    setg(out_.data(), out_.data(), out_.data() + n);
    return traits_type::to_int_type(*gptr());
  }

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
        done_ = true;
        return n;
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
// "ancestors": {id: n}, anything else skipped}}.
class TermMapReader : public nlohmann::json_sax<nlohmann::json> {
 public:
  struct Raw {
    std::string label;
    bool has_label = false;
    bool deprecated = false;
    std::string replaced_by;
    std::vector<std::pair<std::string, int32_t>> ancestors;
    std::vector<std::string> synonyms;
  };
  std::map<std::string, Raw> terms;
  std::string error;

  bool null() override { return Scalar(); }
  bool boolean(bool v) override {
    if (depth_ == 2 && field_ == "deprecated") current_->deprecated = v;
    return Scalar();
  }
  bool number_integer(number_integer_t v) override { return Number(static_cast<double>(v)); }
  bool number_unsigned(number_unsigned_t v) override { return Number(static_cast<double>(v)); }
  bool number_float(number_float_t v, const string_t&) override { return Number(v); }
  bool string(string_t& v) override {
    if (depth_ == 2 && field_ == "label") {
      current_->label = v;
      current_->has_label = true;
    } else if (depth_ == 2 && field_ == "replaced_by") {
      current_->replaced_by = v;
    } else if (depth_ == 3 && in_synonyms_) {
      current_->synonyms.push_back(v);
    }
    return Scalar();
  }
  bool binary(binary_t&) override { return Scalar(); }
  bool start_object(std::size_t) override {
    if (depth_ == 0 && started_) return Fail("more than one JSON value");
    started_ = true;
    if (depth_ == 1) {
      if (!pending_term_) return Fail("a term is not an object");
      current_ = &terms[id_];
    }
    in_ancestors_ = depth_ == 2 && field_ == "ancestors";
    ++depth_;
    return true;
  }
  bool end_object() override {
    --depth_;
    if (depth_ == 2) in_ancestors_ = false;
    if (depth_ == 1) {
      if (!current_->has_label) return Fail("term '" + id_ + "' has no label");
      pending_term_ = false;
    }
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ <= 1) return Fail("a term map is one JSON object of terms");
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
      id_ = k;
      pending_term_ = true;
      if (terms.count(k)) return Fail("term '" + k + "' appears twice");
    } else if (depth_ == 2) {
      field_ = k;
    } else if (depth_ == 3 && in_ancestors_) {
      ancestor_ = k;
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
  static std::string ShortWhat(const char* what) {
    std::string s = what;
    const auto colon = s.rfind(": ");
    return colon == std::string::npos ? s : s.substr(colon + 2);
  }
  bool Fail(const std::string& why) {
    if (error.empty()) error = why;
    return false;
  }
  bool Scalar() {
    if (depth_ == 0) return Fail("a term map is one JSON object of terms");
    if (depth_ == 1) return Fail("term '" + id_ + "' is not an object");
    return true;
  }
  bool Number(double v) {
    if (depth_ == 3 && in_ancestors_) {
      if (!(v >= 0 && v < 1e9)) return Fail("term '" + id_ + "' has a bad ancestor distance");
      current_->ancestors.emplace_back(ancestor_, static_cast<int32_t>(v));
    }
    return Scalar();
  }

  int depth_ = 0;
  bool started_ = false, pending_term_ = false, in_ancestors_ = false, in_synonyms_ = false;
  std::string id_, field_, ancestor_;
  Raw* current_ = nullptr;
};

std::string BaseName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "CL-ontology-v2026-03-26.json.zst" -> "v2026-03-26": from "-v" to the next '.'.
std::string VersionOf(const std::string& path) {
  const std::string base = BaseName(path);
  const auto at = base.find("-v");
  if (at == std::string::npos) return "";
  const auto end = base.find('.', at);
  if (end == std::string::npos || end == at + 2) return "";
  return base.substr(at + 1, end - at - 1);
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

TermMap Assemble(std::map<std::string, TermMapReader::Raw>&& raw, const std::string& source) {
  TermMap m;
  m.source = source;
  m.version = VersionOf(source);
  std::unordered_map<std::string, int32_t> index;
  for (const auto& [id, t] : raw) {  // std::map: ascending ids
    index.emplace(id, static_cast<int32_t>(m.ids.size()));
    m.ids.push_back(id);
  }
  std::vector<int32_t> anc;
  for (auto& [id, t] : raw) {
    m.labels.push_back(std::move(t.label));
    m.deprecated.push_back(t.deprecated ? 1 : 0);
    auto rb = index.find(t.replaced_by);
    m.replaced_by.push_back(t.replaced_by.empty() || rb == index.end() ? -1 : rb->second);
    std::vector<std::pair<int32_t, int32_t>> ancestors;
    for (const auto& [a, d] : t.ancestors) {
      auto it = index.find(a);
      if (it != index.end() && it->first != id) ancestors.emplace_back(it->second, d);
    }
    AppendAncestors(std::move(ancestors), &m.ancestors, &m.ancestor_distance, &m.ancestor_begin);
    for (auto& s : t.synonyms) m.synonyms.push_back(std::move(s));
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
  InflatingBuf buf(std::move(source), CodecOf(head), head);
  std::istream in(&buf);
  TermMapReader reader;
  const bool ok = nlohmann::json::sax_parse(in, &reader, nlohmann::json::input_format_t::json,
                                            /*strict=*/true);
  const std::string why = !buf.error().empty() ? buf.error() : reader.error;
  if (!ok || !why.empty())
    return Status::InvalidArgument("'" + name + "' is not an ontology term map: " +
                                   (why.empty() ? std::string("bad JSON") : why) +
                                   " (expected cellxgene-ontology-guide's JSON, plain, .gz or "
                                   ".zst)");
  if (reader.terms.empty())
    return Status::InvalidArgument("'" + name + "' is not an ontology term map: it has no terms");
  return Assemble(std::move(reader.terms), name);
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
