#include "h5ad/matrix.h"

#include "h5ad/direct_reader.h"

#include <algorithm>
#include <limits>

namespace cellcube::h5ad {
namespace {

constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

std::string Where(const std::string& path) { return "matrix '" + path + "'"; }

Status DescribeValues(hid_t dataset, MatrixInfo* info) {
  Handle type(H5Dget_type(dataset));
  TypeClass cls = ClassifyType(type.get());
  if (cls != TypeClass::kInteger && cls != TypeClass::kUnsigned && cls != TypeClass::kFloat &&
      cls != TypeClass::kBool)
    return Status::Unsupported("values of type " + TypeName(type.get()) + " are not numbers");
  info->dtype = TypeName(type.get());
  info->chunks = ChunkShape(dataset);
  CC_ASSIGN_OR_RETURN(info->filter, DescribeFilters(dataset));
  return Status::Ok();
}

Result<MatrixInfo> DescribeDense(hid_t file, const std::string& path) {
  CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(file, path));
  std::string enc = ReadStringAttr(ds.get(), "encoding-type").value_or("array");
  if (enc != "array")
    return Status::Unsupported("unknown encoding-type '" + enc +
                               "' (cellcube reads array, csr_matrix and csc_matrix)");
  auto shape = DatasetShape(ds.get());
  if (shape.size() != 2)
    return Status::Corrupt("is a " + std::to_string(shape.size()) + "-D dataset, not a matrix");
  MatrixInfo info;
  info.path = path;
  info.encoding = Encoding::kDense;
  info.n_rows = shape[0];
  info.n_cols = shape[1];
  info.stored = shape[0] * shape[1];
  CC_RETURN_IF_ERROR(DescribeValues(ds.get(), &info));
  return info;
}

Result<MatrixInfo> DescribeSparse(hid_t file, const std::string& path) {
  CC_ASSIGN_OR_RETURN(Handle group, OpenGroup(file, path));
  std::string format;
  std::optional<std::vector<int64_t>> shape;
  if (auto enc = ReadStringAttr(group.get(), "encoding-type")) {
    if (*enc == "csr_matrix")
      format = "csr";
    else if (*enc == "csc_matrix")
      format = "csc";
    else
      return Status::Unsupported("unknown encoding-type '" + *enc +
                                 "' (cellcube reads array, csr_matrix and csc_matrix)");
    shape = ReadIntListAttr(group.get(), "shape");
  } else if (auto legacy = ReadStringAttr(group.get(), "h5sparse_format")) {
    format = *legacy;
    if (format != "csr" && format != "csc")
      return Status::Unsupported("unknown h5sparse_format '" + format + "'");
    shape = ReadIntListAttr(group.get(), "h5sparse_shape");
  } else {
    return Status::Unsupported("is a group without an encoding-type or h5sparse_format attribute");
  }
  if (!shape || shape->size() != 2 || (*shape)[0] < 0 || (*shape)[1] < 0)
    return Status::Corrupt("has no valid 2-D shape attribute");
  MatrixInfo info;
  info.path = path;
  info.encoding = format == "csr" ? Encoding::kCsr : Encoding::kCsc;
  info.n_rows = (*shape)[0];
  info.n_cols = (*shape)[1];
  for (const char* part : {"data", "indices", "indptr"})
    if (GetNodeKind(group.get(), part) != NodeKind::kDataset)
      return Status::Corrupt(std::string("has no '") + part + "' dataset");
  CC_ASSIGN_OR_RETURN(Handle data, OpenDataset(group.get(), "data"));
  CC_ASSIGN_OR_RETURN(Handle indices, OpenDataset(group.get(), "indices"));
  CC_ASSIGN_OR_RETURN(Handle indptr, OpenDataset(group.get(), "indptr"));
  CC_RETURN_IF_ERROR(DescribeValues(data.get(), &info));
  for (hid_t part : {indices.get(), indptr.get()}) {
    Handle type(H5Dget_type(part));
    TypeClass cls = ClassifyType(type.get());
    if (cls != TypeClass::kInteger && cls != TypeClass::kUnsigned)
      return Status::Corrupt("has non-integer indices or indptr");
    CC_ASSIGN_OR_RETURN(std::string unused, DescribeFilters(part));
    (void)unused;
    if (DatasetShape(part).size() != 1) return Status::Corrupt("has indices or indptr not 1-D");
  }
  Handle index_type(H5Dget_type(indices.get()));
  info.index_dtype = TypeName(index_type.get());
  info.stored = DatasetSize(data.get());
  if (DatasetShape(data.get()).size() != 1) return Status::Corrupt("has 'data' that is not 1-D");
  if (DatasetSize(indices.get()) != info.stored)
    return Status::Corrupt("has " + std::to_string(info.stored) + " values but " +
                           std::to_string(DatasetSize(indices.get())) + " indices");
  int64_t n_major = info.encoding == Encoding::kCsr ? info.n_rows : info.n_cols;
  if (DatasetSize(indptr.get()) != n_major + 1)
    return Status::Corrupt("has an indptr of " + std::to_string(DatasetSize(indptr.get())) +
                           " entries; a " + format + " matrix of shape (" +
                           std::to_string(info.n_rows) + ", " + std::to_string(info.n_cols) +
                           ") needs " + std::to_string(n_major + 1));
  return info;
}

// Reads CSR (by rows) or CSC (by columns) through HDF5.
class SparseStream final : public MatrixStream {
 public:
  SparseStream(const MatrixInfo& info, Handle data, Handle indices, std::vector<int64_t> indptr,
               int64_t target, std::optional<DirectSource> data_direct,
               std::optional<DirectSource> indices_direct)
      : info_(info),
        data_(std::move(data)),
        indices_(std::move(indices)),
        indptr_(std::move(indptr)),
        data_direct_(std::move(data_direct)),
        indices_direct_(std::move(indices_direct)) {
    // Block boundaries: whole rows up to the target; a row longer than it is one block.
    const auto n_major = static_cast<int64_t>(indptr_.size()) - 1;
    target = std::max<int64_t>(1, target);
    bounds_.push_back(0);
    for (int64_t m = 0; m < n_major;) {
      int64_t end = m + 1;
      while (end < n_major && indptr_[end + 1] - indptr_[m] <= target) ++end;
      bounds_.push_back(end);
      m = end;
    }
  }

  bool by_rows() const override { return info_.encoding == Encoding::kCsr; }
  int64_t num_blocks() const override { return static_cast<int64_t>(bounds_.size()) - 1; }

  Status ReadBlock(int64_t index, SparseBlock* block) const override {
    if (index < 0 || index >= num_blocks()) return Status::Internal("block index out of range");
    int64_t begin = bounds_[index], end = bounds_[index + 1];
    int64_t lo = indptr_[begin], hi = indptr_[end];
    block->major_begin = begin;
    block->major_count = end - begin;
    block->offsets.resize(static_cast<size_t>(end - begin + 1));
    for (int64_t m = begin; m <= end; ++m) block->offsets[m - begin] = indptr_[m] - lo;
    block->values.resize(static_cast<size_t>(hi - lo));
    // Reused with the block: fresh multi-megabyte buffers cost page faults each time.
    std::vector<int64_t>& index_buf = block->scratch;
    index_buf.resize(static_cast<size_t>(hi - lo));
    if (data_direct_ && indices_direct_) {
      // Straight from the file, inflated on this thread: no HDF5, no lock.
      CC_RETURN_IF_ERROR(data_direct_->Read(lo, hi - lo, block->values.data()));
      CC_RETURN_IF_ERROR(indices_direct_->Read(lo, hi - lo, index_buf.data()));
    } else {
      Hdf5Lock lock(Hdf5Mutex());
      CC_RETURN_IF_ERROR(
          ReadRange(data_.get(), H5T_NATIVE_DOUBLE, lo, hi - lo, block->values.data())
              .WithContext(Where(info_.path) + " data"));
      CC_RETURN_IF_ERROR(ReadRange(indices_.get(), H5T_NATIVE_INT64, lo, hi - lo, index_buf.data())
                             .WithContext(Where(info_.path) + " indices"));
    }
    const int64_t n_minor = by_rows() ? info_.n_cols : info_.n_rows;
    block->minor.resize(index_buf.size());
    for (size_t i = 0; i < index_buf.size(); ++i) {
      int64_t idx = index_buf[i];
      if (idx < 0 || idx >= n_minor) return OutOfRange(begin, block->offsets, i, idx, n_minor);
      block->minor[i] = static_cast<int32_t>(idx);
    }
    return Status::Ok();
  }

 private:
  Status OutOfRange(int64_t begin, const std::vector<int64_t>& offsets, size_t i, int64_t idx,
                    int64_t n_minor) const {
    auto it = std::upper_bound(offsets.begin(), offsets.end(), static_cast<int64_t>(i));
    int64_t major = begin + (it - offsets.begin()) - 1;
    const char* major_name = by_rows() ? "row" : "column";
    const char* minor_name = by_rows() ? "column" : "row";
    return Status::Corrupt(Where(info_.path) + ": " + major_name + " " + std::to_string(major) +
                           " has " + minor_name + " index " + std::to_string(idx) +
                           ", outside 0.." + std::to_string(n_minor - 1));
  }

  MatrixInfo info_;
  Handle data_, indices_;
  std::vector<int64_t> indptr_;
  std::optional<DirectSource> data_direct_, indices_direct_;
  std::vector<int64_t> bounds_;  // block i covers majors [bounds_[i], bounds_[i + 1])
};

// Reads a dense 2-D dataset by rows, dropping zeros.
class DenseStream final : public MatrixStream {
 public:
  DenseStream(const MatrixInfo& info, Handle data, int64_t target)
      : info_(info), data_(std::move(data)) {
    int64_t cols = std::max<int64_t>(1, info.n_cols);
    rows_per_block_ = std::max<int64_t>(1, target / cols);
    if (!info.chunks.empty() && info.chunks[0] > 0) {
      // Whole chunks per block, so HDF5 inflates each chunk once.
      int64_t c = info.chunks[0];
      rows_per_block_ = std::max<int64_t>(c, rows_per_block_ / c * c);
    }
  }

  bool by_rows() const override { return true; }
  int64_t num_blocks() const override {
    return (info_.n_rows + rows_per_block_ - 1) / rows_per_block_;
  }

  Status ReadBlock(int64_t index, SparseBlock* block) const override {
    if (index < 0 || index >= num_blocks()) return Status::Internal("block index out of range");
    int64_t first = index * rows_per_block_;
    int64_t n = std::min(rows_per_block_, info_.n_rows - first);
    std::vector<double> buf(static_cast<size_t>(n * info_.n_cols));
    {
      Hdf5Lock lock(Hdf5Mutex());
      CC_RETURN_IF_ERROR(ReadRows(data_.get(), H5T_NATIVE_DOUBLE, first, n, buf.data())
                             .WithContext(Where(info_.path)));
    }
    block->major_begin = first;
    block->major_count = n;
    block->offsets.assign(1, 0);
    block->minor.clear();
    block->values.clear();
    for (int64_t r = 0; r < n; ++r) {
      const double* row = buf.data() + r * info_.n_cols;
      for (int64_t c = 0; c < info_.n_cols; ++c) {
        if (row[c] != 0) {  // NaN compares unequal, so it is kept
          block->minor.push_back(static_cast<int32_t>(c));
          block->values.push_back(row[c]);
        }
      }
      block->offsets.push_back(static_cast<int64_t>(block->values.size()));
    }
    return Status::Ok();
  }

 private:
  MatrixInfo info_;
  Handle data_;
  int64_t rows_per_block_ = 1;
};

Status ValidateIndptr(const MatrixInfo& info, const std::vector<int64_t>& indptr) {
  const char* major = info.encoding == Encoding::kCsr ? "row" : "column";
  if (indptr.empty() || indptr[0] != 0)
    return Status::Corrupt(Where(info.path) + ": indptr does not start at 0");
  for (size_t i = 1; i < indptr.size(); ++i)
    if (indptr[i] < indptr[i - 1])
      return Status::Corrupt(Where(info.path) + ": indptr decreases at " + major + " " +
                             std::to_string(i - 1) + " (" + std::to_string(indptr[i - 1]) +
                             " then " + std::to_string(indptr[i]) + ")");
  if (indptr.back() != info.stored)
    return Status::Corrupt(Where(info.path) + ": indptr ends at " + std::to_string(indptr.back()) +
                           " but " + std::to_string(info.stored) + " values are stored");
  return Status::Ok();
}

}  // namespace

Result<MatrixInfo> DescribeMatrix(hid_t file, const std::string& path) {
  Result<MatrixInfo> info = Status::NotFound(Where(path) + " is not in the file");
  switch (GetNodeKind(file, path)) {
    case NodeKind::kDataset:
      info = DescribeDense(file, path);
      break;
    case NodeKind::kGroup:
      info = DescribeSparse(file, path);
      break;
    default:
      return info;
  }
  if (!info.ok() && info.status().code() != StatusCode::kNotFound)
    return info.status().WithContext(Where(path));
  if (info.ok() && (info->n_rows > kMaxDim || info->n_cols > kMaxDim))
    return Status::Unsupported(Where(path) + " has more than 2^31 rows or columns");
  return info;
}

Result<std::unique_ptr<MatrixStream>> OpenMatrixStream(hid_t file, const FileAccess& access,
                                                       const MatrixInfo& info,
                                                       const StreamOptions& options) {
  if (info.encoding == Encoding::kDense) {
    CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(file, info.path));
    return std::unique_ptr<MatrixStream>(
        new DenseStream(info, std::move(ds), options.target_values));
  }
  CC_ASSIGN_OR_RETURN(Handle data, OpenDataset(file, info.path + "/data"));
  CC_ASSIGN_OR_RETURN(Handle indices, OpenDataset(file, info.path + "/indices"));
  CC_ASSIGN_OR_RETURN(Handle indptr_ds, OpenDataset(file, info.path + "/indptr"));
  CC_ASSIGN_OR_RETURN(auto indptr, ReadInt64Dataset(indptr_ds.get()));
  CC_RETURN_IF_ERROR(ValidateIndptr(info, indptr));
  std::optional<DirectSource> data_direct, indices_direct;
  if (options.direct_reads) {
    data_direct =
        DirectSource::Index(data.get(), access.fd, access.size, Where(info.path) + " data");
    indices_direct =
        DirectSource::Index(indices.get(), access.fd, access.size, Where(info.path) + " indices");
  }
  return std::unique_ptr<MatrixStream>(
      new SparseStream(info, std::move(data), std::move(indices), std::move(indptr),
                       options.target_values, std::move(data_direct), std::move(indices_direct)));
}

Result<std::vector<double>> ReadFirstValues(hid_t file, const MatrixInfo& info,
                                            int64_t max_values) {
  std::vector<double> out;
  if (info.encoding == Encoding::kDense) {
    if (info.n_cols == 0) return out;
    CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(file, info.path));
    int64_t rows = std::min(info.n_rows, (max_values + info.n_cols - 1) / info.n_cols);
    out.resize(static_cast<size_t>(rows * info.n_cols));
    CC_RETURN_IF_ERROR(ReadRows(ds.get(), H5T_NATIVE_DOUBLE, 0, rows, out.data()));
    if (static_cast<int64_t>(out.size()) > max_values) out.resize(static_cast<size_t>(max_values));
    return out;
  }
  CC_ASSIGN_OR_RETURN(Handle data, OpenDataset(file, info.path + "/data"));
  int64_t n = std::min(max_values, info.stored);
  out.resize(static_cast<size_t>(n));
  CC_RETURN_IF_ERROR(ReadRange(data.get(), H5T_NATIVE_DOUBLE, 0, n, out.data()));
  return out;
}

}  // namespace cellcube::h5ad
