#include <sys/stat.h>

#include <fcntl.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "cellcube/h5ad.h"
#include "h5ad/dataframe.h"
#include "h5ad/hdf5_util.h"
#include "h5ad/matrix.h"
#include "util/isolate.h"
#include "util/text.h"

namespace cellcube::h5ad {

const char* const kCrashedReaderAdvice =
    "its HDF5 structure is most likely damaged in a way libhdf5 does not survive; check it "
    "with 'h5dump -H', then re-create or re-download it";

const char* EncodingName(Encoding e) {
  switch (e) {
    case Encoding::kDense:
      return "dense";
    case Encoding::kCsr:
      return "csr";
    case Encoding::kCsc:
      return "csc";
  }
  return "?";
}

const char* ColumnKindName(ColumnKind k) {
  switch (k) {
    case ColumnKind::kCategorical:
      return "categorical";
    case ColumnKind::kString:
      return "string";
    case ColumnKind::kInteger:
      return "integer";
    case ColumnKind::kFloat:
      return "float";
    case ColumnKind::kBoolean:
      return "boolean";
    case ColumnKind::kNullableInteger:
      return "nullable-integer";
    case ColumnKind::kNullableBoolean:
      return "nullable-boolean";
  }
  return "?";
}

int64_t Column::CountMissing() const {
  int64_t n = 0;
  for (int32_t c : codes) n += c == kMissing;
  return n;
}

int64_t Column::CountDistinctPresent() const {
  std::vector<bool> present(labels.size(), false);
  for (int32_t c : codes)
    if (c >= 0) present[static_cast<size_t>(c)] = true;
  int64_t n = 0;
  for (bool p : present) n += p;
  return n;
}

struct File::Impl {
  ~Impl() {
    if (access.fd >= 0) ::close(access.fd);
  }
  std::string path;
  FileAccess access;
  std::string layout;
  Handle file;
  DataFrameInfo obs;
  DataFrameInfo var;
  std::optional<DataFrameInfo> raw_var;
  std::vector<MatrixInfo> matrices;

  bool IsRaw(const std::string& matrix) const { return matrix == "raw/X" || matrix == "raw.X"; }
  const DataFrameInfo& VarFor(const std::string& matrix) const {
    return IsRaw(matrix) && raw_var ? *raw_var : var;
  }
  const MatrixInfo* Find(const std::string& p) const {
    for (const auto& m : matrices)
      if (m.path == p) return &m;
    return nullptr;
  }
};

namespace {

std::string Quoted(const std::string& path) { return "'" + path + "'"; }

Status CheckPlainFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::NotFound("cannot open " + Quoted(path) + ": no such file");
    return Status::IoError("cannot open " + Quoted(path) + ": " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode))
    return Status::InvalidArgument(Quoted(path) + " is a directory; give an .h5ad file");
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(Quoted(path) + " is not a regular file");
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Status::IoError("cannot open " + Quoted(path) + ": " + std::strerror(errno));
  ::close(fd);
  return Status::Ok();
}

// Checks what libhdf5 1.10 trusts before validating it (found by fuzz/h5ad_fuzz): a
// version 0/1 superblock cut short, or one whose driver-info-block address is set,
// makes H5Fopen allocate (and touch) as many bytes as a damaged length field says,
// gigabytes for a 50-byte file. AnnData files never have a driver info block (it
// belongs to the family/multi file drivers), so such a file is refused before HDF5
// reads it.
Status CheckSuperblock(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError("cannot open " + Quoted(path) + ": " + std::strerror(errno));
  struct stat st {};
  const uint64_t size = ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  static const unsigned char kSignature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  Status result = Status::Ok();
  // HDF5 looks for the signature at 0, 512, 1024, 2048, ...
  for (uint64_t at = 0; at + 8 <= size; at = at == 0 ? 512 : at * 2) {
    unsigned char b[96] = {};
    const ssize_t got = ::pread(fd, b, sizeof b, static_cast<off_t>(at));
    if (got < 8 || std::memcmp(b, kSignature, 8) != 0) continue;
    const int version = got > 8 ? b[8] : -1;
    if (version != 0 && version != 1) break;  // v2/v3 superblocks are checksummed
    const unsigned addr = got > 13 ? b[13] : 0;
    const size_t fixed = version == 0 ? 24 : 28;
    if (addr != 2 && addr != 4 && addr != 8) break;  // HDF5 refuses others itself
    const size_t driver_at = fixed + 3 * addr;
    if (static_cast<size_t>(got) < driver_at + addr) {
      result = Status::Corrupt(Quoted(path) +
                               " is a damaged or truncated HDF5 file (its superblock "
                               "is cut short)");
      break;
    }
    bool undefined = true;
    for (size_t k = 0; k < addr; ++k) undefined = undefined && b[driver_at + k] == 0xff;
    if (!undefined)
      result = Status::Corrupt(Quoted(path) +
                               " is a damaged or truncated HDF5 file (its superblock "
                               "points to a driver info block, which no AnnData file has)");
    break;
  }
  ::close(fd);
  return result;
}

std::string DescribeLayout(hid_t file, const DataFrameInfo& obs) {
  if (obs.index_name == "index" && GetNodeKind(file, "obs") == NodeKind::kDataset)
    return "anndata 0.6 (legacy)";
  Handle root(H5Gopen2(file, "/", H5P_DEFAULT));
  if (ReadStringAttr(root.get(), "encoding-type").value_or("") == "anndata")
    return "anndata >= 0.8";
  return "anndata 0.7";
}

Status AddMatrix(hid_t file, const std::string& path, int64_t n_rows, int64_t n_cols,
                 const std::string& cols_from, std::vector<MatrixInfo>* out) {
  CC_ASSIGN_OR_RETURN(MatrixInfo info, DescribeMatrix(file, path));
  if (info.n_rows != n_rows || info.n_cols != n_cols)
    return Status::Corrupt("matrix '" + path + "' has shape (" + std::to_string(info.n_rows) +
                           ", " + std::to_string(info.n_cols) + ") but obs has " +
                           std::to_string(n_rows) + " rows and " + cols_from + " has " +
                           std::to_string(n_cols));
  out->push_back(std::move(info));
  return Status::Ok();
}

}  // namespace

File::File(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
File::~File() {
  Hdf5Lock lock(Hdf5Mutex());
  impl_.reset();
}

Result<std::unique_ptr<File>> File::Open(const std::string& path) {
  InitHdf5();
  NoteReading(path);
  CC_RETURN_IF_ERROR(CheckPlainFile(path));
  Hdf5Lock lock(Hdf5Mutex());
  if (H5Fis_hdf5(path.c_str()) <= 0)
    return Status::InvalidArgument(Quoted(path) +
                                   " is not an HDF5 file; cellcube reads AnnData .h5ad files");
  CC_RETURN_IF_ERROR(CheckSuperblock(path));
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->file = Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!impl->file.valid()) {
    std::string detail = Hdf5ErrorDetail();
    return Status::Corrupt(Quoted(path) + " is a damaged or truncated HDF5 file" +
                           (detail.empty() ? "" : " (HDF5: " + detail + ")"));
  }
  impl->access.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (struct stat st{}; impl->access.fd >= 0 && ::fstat(impl->access.fd, &st) == 0)
    impl->access.size = static_cast<uint64_t>(st.st_size);
  hid_t f = impl->file.get();
  if (GetNodeKind(f, "obs") == NodeKind::kMissing || GetNodeKind(f, "var") == NodeKind::kMissing) {
    Handle root(H5Gopen2(f, "/", H5P_DEFAULT));
    return Status::InvalidArgument(Quoted(path) +
                                   " is HDF5 but not AnnData: it has no 'obs' and 'var' (top level "
                                   "holds " +
                                   QuoteList(ListGroup(root.get())) + ")");
  }
  auto context = [&](const Status& s) { return s.WithContext(Quoted(path)); };
  auto obs = ReadDataFrameInfo(f, "obs");
  if (!obs.ok()) return context(obs.status());
  auto var = ReadDataFrameInfo(f, "var");
  if (!var.ok()) return context(var.status());
  impl->obs = std::move(obs).value();
  impl->var = std::move(var).value();
  impl->layout = DescribeLayout(f, impl->obs);

  const int64_t n_obs = impl->obs.n_rows, n_vars = impl->var.n_rows;
  auto add = [&](const std::string& m, int64_t n_cols, const std::string& cols_from) {
    return AddMatrix(f, m, n_obs, n_cols, cols_from, &impl->matrices);
  };
  if (GetNodeKind(f, "X") != NodeKind::kMissing) {
    Status s = add("X", n_vars, "var");
    if (!s.ok()) return context(s);
  }
  for (const char* raw : {"raw/X", "raw.X"}) {
    if (GetNodeKind(f, raw) == NodeKind::kMissing) continue;
    std::string var_path = raw == std::string("raw/X") ? "raw/var" : "raw.var";
    auto raw_var = ReadDataFrameInfo(f, var_path);
    if (!raw_var.ok()) return context(raw_var.status());
    impl->raw_var = std::move(raw_var).value();
    Status s = add(raw, impl->raw_var->n_rows, var_path);
    if (!s.ok()) return context(s);
  }
  if (GetNodeKind(f, "layers") == NodeKind::kGroup) {
    CC_ASSIGN_OR_RETURN(Handle layers, OpenGroup(f, "layers"));
    for (const auto& name : ListGroup(layers.get())) {
      Status s = add("layers/" + name, n_vars, "var");
      if (!s.ok()) return context(s);
    }
  }
  return std::unique_ptr<File>(new File(std::move(impl)));
}

const std::string& File::path() const { return impl_->path; }
const std::string& File::layout() const { return impl_->layout; }
int64_t File::n_obs() const { return impl_->obs.n_rows; }
int64_t File::n_vars() const { return impl_->var.n_rows; }
const std::vector<MatrixInfo>& File::matrices() const { return impl_->matrices; }

Result<MatrixInfo> File::ResolveMatrix(const std::string& spec) const {
  std::vector<std::string> candidates;
  if (spec == "auto") {
    candidates = {"raw/X", "raw.X", "layers/counts", "X"};
  } else if (spec == "raw") {
    candidates = {"raw/X", "raw.X"};
  } else if (spec == "raw.X" || spec == "raw/X") {
    candidates = {"raw/X", "raw.X"};
  } else {
    candidates = {spec};
  }
  for (const auto& c : candidates)
    if (const MatrixInfo* m = impl_->Find(c)) return *m;
  std::vector<std::string> present;
  for (const auto& m : impl_->matrices) present.push_back(m.path);
  if (present.empty())
    return Status::NotFound(Quoted(impl_->path) + " has no matrix (no X, raw/X or layers)");
  return Status::NotFound("no matrix '" + spec + "' in " + Quoted(impl_->path) +
                          SuggestionSuffix(spec, present));
}

Result<DataFrameInfo> File::ObsInfo() const { return impl_->obs; }

Result<DataFrameInfo> File::VarInfo(const std::string& matrix_path) const {
  return impl_->VarFor(matrix_path);
}

Result<Column> File::ReadObsColumn(const std::string& name) const {
  Hdf5Lock lock(Hdf5Mutex());
  return ReadDataFrameColumn(impl_->file.get(), impl_->obs, name);
}

Result<Column> File::ReadVarColumn(const std::string& name, const std::string& matrix_path) const {
  Hdf5Lock lock(Hdf5Mutex());
  return ReadDataFrameColumn(impl_->file.get(), impl_->VarFor(matrix_path), name);
}

Result<std::vector<std::string>> File::ReadObsIndex() const {
  Hdf5Lock lock(Hdf5Mutex());
  return ReadDataFrameIndex(impl_->file.get(), impl_->obs);
}

Result<std::vector<std::string>> File::ReadVarIndex(const std::string& matrix_path) const {
  Hdf5Lock lock(Hdf5Mutex());
  return ReadDataFrameIndex(impl_->file.get(), impl_->VarFor(matrix_path));
}

Result<std::unique_ptr<MatrixStream>> File::StreamMatrix(const std::string& matrix_path,
                                                         const StreamOptions& options) const {
  CC_ASSIGN_OR_RETURN(MatrixInfo info, ResolveMatrix(matrix_path));
  Hdf5Lock lock(Hdf5Mutex());
  return OpenMatrixStream(impl_->file.get(), impl_->access, info, options);
}

Result<std::vector<double>> File::SampleValues(const std::string& matrix_path,
                                               int64_t max_values) const {
  CC_ASSIGN_OR_RETURN(MatrixInfo info, ResolveMatrix(matrix_path));
  Hdf5Lock lock(Hdf5Mutex());
  return ReadFirstValues(impl_->file.get(), info, max_values);
}

Result<DataFrameInfo> File::DataFrameAt(const std::string& group) const {
  Hdf5Lock lock(Hdf5Mutex());
  return ReadDataFrameInfo(impl_->file.get(), group);
}

Result<Column> File::ReadColumnAt(const DataFrameInfo& frame, const std::string& name) const {
  Hdf5Lock lock(Hdf5Mutex());
  return ReadDataFrameColumn(impl_->file.get(), frame, name);
}

Result<std::vector<std::string>> File::ReadIndexAt(const DataFrameInfo& frame) const {
  Hdf5Lock lock(Hdf5Mutex());
  return ReadDataFrameIndex(impl_->file.get(), frame);
}

Result<std::vector<double>> File::ReadDoubles(const std::string& dataset) const {
  Hdf5Lock lock(Hdf5Mutex());
  CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(impl_->file.get(), dataset));
  return ReadDoubleDataset(ds.get());
}

Result<std::vector<int64_t>> File::ReadIntegers(const std::string& dataset) const {
  Hdf5Lock lock(Hdf5Mutex());
  CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(impl_->file.get(), dataset));
  Handle type(H5Dget_type(ds.get()));
  TypeClass cls = ClassifyType(type.get());
  if (cls != TypeClass::kInteger && cls != TypeClass::kUnsigned && cls != TypeClass::kBool)
    return Status::Corrupt("dataset '" + dataset + "' does not hold integers");
  return ReadInt64Dataset(ds.get());
}

Result<std::vector<int64_t>> File::ShapeOf(const std::string& dataset) const {
  Hdf5Lock lock(Hdf5Mutex());
  CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(impl_->file.get(), dataset));
  return DatasetShape(ds.get());
}

Status File::ReadBytesInto(const std::string& dataset, void* out, uint64_t bytes) const {
  Hdf5Lock lock(Hdf5Mutex());
  CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(impl_->file.get(), dataset));
  Handle type(H5Dget_type(ds.get()));
  if (ClassifyType(type.get()) != TypeClass::kUnsigned || H5Tget_size(type.get()) != 1)
    return Status::Corrupt("dataset '" + dataset + "' does not hold uint8 values");
  if (static_cast<uint64_t>(DatasetSize(ds.get())) != bytes)
    return Status::Corrupt("dataset '" + dataset + "' does not hold " + std::to_string(bytes) +
                           " bytes");
  return ReadRange(ds.get(), H5T_NATIVE_UINT8, 0, static_cast<int64_t>(bytes), out);
}

Result<std::vector<std::string>> File::ReadStrings(const std::string& dataset) const {
  Hdf5Lock lock(Hdf5Mutex());
  CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(impl_->file.get(), dataset));
  return ReadStringDataset(ds.get());
}

Result<std::string> File::ReadScalarString(const std::string& dataset) const {
  CC_ASSIGN_OR_RETURN(auto values, ReadStrings(dataset));
  if (values.size() != 1)
    return Status::Corrupt("dataset '" + dataset + "' is not a single string");
  return values[0];
}

bool File::Exists(const std::string& path) const {
  Hdf5Lock lock(Hdf5Mutex());
  return GetNodeKind(impl_->file.get(), path) != NodeKind::kMissing;
}

Result<File::Extent> File::Locate(const std::string& dataset) const {
  Hdf5Lock lock(Hdf5Mutex());
  CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(impl_->file.get(), dataset));
  Extent e;
  Handle type(H5Dget_type(ds.get()));
  e.dtype = TypeName(type.get());
  e.elements = DatasetSize(ds.get());
  e.bytes = H5Dget_storage_size(ds.get());
  Handle dcpl(H5Dget_create_plist(ds.get()));
  TypeClass cls = ClassifyType(type.get());
  bool numeric =
      cls == TypeClass::kInteger || cls == TypeClass::kUnsigned || cls == TypeClass::kFloat;
  bool little = H5Tget_order(type.get()) == H5T_ORDER_LE || H5Tget_size(type.get()) == 1;
  haddr_t addr = H5Dget_offset(ds.get());
  // Fixed-width strings padded with NULs read in place too (a string ends at its first
  // NUL or at the width); variable-length ones are heap references, never in place.
  const bool fixed_string = cls == TypeClass::kString && H5Tis_variable_str(type.get()) == 0 &&
                            H5Tget_strpad(type.get()) != H5T_STR_SPACEPAD;
  if (fixed_string) e.string_width = H5Tget_size(type.get());
  e.in_place = ((numeric && little) || fixed_string) &&
               H5Pget_layout(dcpl.get()) == H5D_CONTIGUOUS && H5Pget_nfilters(dcpl.get()) == 0 &&
               addr != HADDR_UNDEF &&
               e.bytes == static_cast<uint64_t>(e.elements) * H5Tget_size(type.get());
  if (e.in_place) e.offset = addr;
  return e;
}

}  // namespace cellcube::h5ad
