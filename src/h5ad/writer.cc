// The .h5ad writer (anndata >= 0.8 layout) on the HDF5 C library. Every HDF5 call
// holds Hdf5Lock; gzip compression of appendable datasets runs outside the lock on
// several threads (libdeflate) and the finished chunks are handed to HDF5 with
// H5Dwrite_chunk, so HDF5 never re-reads or re-compresses a chunk.
#include <libdeflate.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "cellcube/h5ad_writer.h"
#include "h5ad/hdf5_util.h"
#include "h5ad/write_driver.h"
#include "util/parallel.h"

namespace cellcube::h5ad {

// Direct chunk writes hand HDF5 the bytes as they are in memory; the file types are
// little-endian.
static_assert(std::endian::native == std::endian::little,
              "the h5ad writer assumes a little-endian host");

size_t ElemSize(ElemType t) {
  switch (t) {
    case ElemType::kInt8:
    case ElemType::kUInt8:
      return 1;
    case ElemType::kInt16:
    case ElemType::kUInt16:
      return 2;
    case ElemType::kInt32:
    case ElemType::kUInt32:
    case ElemType::kFloat32:
      return 4;
    case ElemType::kInt64:
    case ElemType::kUInt64:
    case ElemType::kFloat64:
      return 8;
  }
  return 0;
}

namespace {

hid_t FileType(ElemType t) {
  switch (t) {
    case ElemType::kInt8:
      return H5T_STD_I8LE;
    case ElemType::kInt16:
      return H5T_STD_I16LE;
    case ElemType::kInt32:
      return H5T_STD_I32LE;
    case ElemType::kInt64:
      return H5T_STD_I64LE;
    case ElemType::kUInt8:
      return H5T_STD_U8LE;
    case ElemType::kUInt16:
      return H5T_STD_U16LE;
    case ElemType::kUInt32:
      return H5T_STD_U32LE;
    case ElemType::kUInt64:
      return H5T_STD_U64LE;
    case ElemType::kFloat32:
      return H5T_IEEE_F32LE;
    case ElemType::kFloat64:
      return H5T_IEEE_F64LE;
  }
  return H5I_INVALID_HID;
}

hid_t MemType(ElemType t) {
  switch (t) {
    case ElemType::kInt8:
      return H5T_NATIVE_INT8;
    case ElemType::kInt16:
      return H5T_NATIVE_INT16;
    case ElemType::kInt32:
      return H5T_NATIVE_INT32;
    case ElemType::kInt64:
      return H5T_NATIVE_INT64;
    case ElemType::kUInt8:
      return H5T_NATIVE_UINT8;
    case ElemType::kUInt16:
      return H5T_NATIVE_UINT16;
    case ElemType::kUInt32:
      return H5T_NATIVE_UINT32;
    case ElemType::kUInt64:
      return H5T_NATIVE_UINT64;
    case ElemType::kFloat32:
      return H5T_NATIVE_FLOAT;
    case ElemType::kFloat64:
      return H5T_NATIVE_DOUBLE;
  }
  return H5I_INVALID_HID;
}

bool ValidElemType(ElemType t) { return ElemSize(t) != 0; }

// Variable-length UTF-8 strings, as h5py writes Python str.
Handle StringType() {
  Handle t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

// numpy bool as h5py writes it: an int8 enum {FALSE = 0, TRUE = 1}.
Handle BoolType() {
  Handle t(H5Tenum_create(H5T_STD_I8LE));
  int8_t v = 0;
  H5Tenum_insert(t.get(), "FALSE", &v);
  v = 1;
  H5Tenum_insert(t.get(), "TRUE", &v);
  return t;
}

// "X/data" and "/X/data" name the same object.
std::string Key(const std::string& path) {
  size_t start = path.find_first_not_of('/');
  return start == std::string::npos ? "/" : path.substr(start);
}

bool ValidName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

struct Appendable {
  Handle dataset;
  ElemType type = ElemType::kFloat32;
  size_t elem_size = 0;
  int64_t chunk = 0;  // elements per chunk
  int gzip_level = 0;
  int64_t size = 0;              // elements appended so far (the dataset's extent)
  int64_t written = 0;           // elements in whole chunks already in the file
  std::vector<uint8_t> pending;  // elements [written, size), less than one chunk
};

struct FixedArray {
  Handle dataset;
  ElemType type = ElemType::kFloat32;
  int64_t size = 0;
  int64_t row = 1;  // elements per row: slices of a 2-D array are whole rows
};

// One chunk ready for H5Dwrite_chunk.
struct EncodedChunk {
  const uint8_t* raw = nullptr;  // chunk_bytes of input
  std::vector<uint8_t> packed;   // compressed bytes (when smaller than the input)
  bool compressed = false;
};

}  // namespace

struct Writer::Impl {
  std::string path;
  hid_t file = H5I_INVALID_HID;  // closed by CloseAll, which reports errors
  bool closed = false;
  int os_error = 0;  // set by the file driver when a write fails (write_driver.h)
  Status io_error;   // the first failed write: every later call and Close report it
  std::map<std::string, Appendable> appendables;
  std::map<std::string, FixedArray> fixed_arrays;
  int threads = 1;
  std::map<int, std::vector<libdeflate_compressor*>> compressors;  // per level, per thread

  ~Impl() {
    if (file >= 0) {
      Hdf5Lock lock(Hdf5Mutex());
      H5Fclose(file);
    }
    for (auto& [level, list] : compressors)
      for (auto* c : list) libdeflate_free_compressor(c);
  }

  // An I/O failure of an HDF5 call, with the file's path and the reason.
  Status Fail(const std::string& what) {
    std::string reason = Hdf5ErrorDetail();
    Status s = Status::IoError(path + ": " + what + (reason.empty() ? "" : ": " + reason));
    if (io_error.ok()) io_error = s;
    return s;
  }
  Status Invalid(const std::string& what) const {
    return Status::InvalidArgument(path + ": " + what);
  }
  Status CheckOpen() const {
    if (closed || file < 0) return Status::Internal(path + ": the writer is already closed");
    return io_error;
  }
  // After HDF5 calls that write: the error of a write the driver saw fail, if any.
  Status CheckIo(const std::string& what) {
    if (os_error != 0 && io_error.ok())
      io_error = Status::IoError(path + ": " + what + ": " + std::strerror(os_error));
    return io_error;
  }

  NodeKind Kind(const std::string& p) {
    std::string k = Key(p);
    return k == "/" ? NodeKind::kGroup : GetNodeKind(file, k);
  }

  // Checks that `p` is free and its parent group exists.
  Status CheckNewPath(const std::string& p) {
    std::string k = Key(p);
    if (k == "/" || k.empty()) return Invalid("cannot create the root group");
    if (Kind(k) != NodeKind::kMissing) return Invalid("'" + k + "' already exists");
    size_t slash = k.rfind('/');
    if (!ValidName(slash == std::string::npos ? k : k.substr(slash + 1)))
      return Invalid("'" + p + "' is not a valid object name");
    if (slash != std::string::npos && Kind(k.substr(0, slash)) != NodeKind::kGroup)
      return Invalid("cannot create '" + k + "': no group '" + k.substr(0, slash) + "'");
    return Status::Ok();
  }

  Result<Handle> OpenObject(const std::string& p) {
    if (Kind(p) == NodeKind::kMissing) return Invalid("no object '" + p + "' to set attributes on");
    Handle obj(H5Oopen(file, Key(p) == "/" ? "/" : Key(p).c_str(), H5P_DEFAULT));
    if (!obj.valid()) return Fail("cannot open '" + p + "'");
    return obj;
  }

  // Creates (or replaces) attribute `name` on `p`.
  Status WriteAttr(const std::string& p, const std::string& name, hid_t file_type, hid_t space,
                   hid_t mem_type, const void* buf, bool has_data) {
    if (name.empty()) return Invalid("empty attribute name on '" + p + "'");
    CC_ASSIGN_OR_RETURN(Handle obj, OpenObject(p));
    if (H5Aexists(obj.get(), name.c_str()) > 0 && H5Adelete(obj.get(), name.c_str()) < 0)
      return Fail("cannot replace attribute '" + name + "' of '" + p + "'");
    Handle attr(H5Acreate2(obj.get(), name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT));
    if (!attr.valid()) return Fail("cannot create attribute '" + name + "' of '" + p + "'");
    if (has_data && H5Awrite(attr.get(), mem_type, buf) < 0)
      return Fail("cannot write attribute '" + name + "' of '" + p + "'");
    return CheckIo("cannot write attribute '" + name + "' of '" + p + "'");
  }

  Status StringAttr(const std::string& p, const std::string& name, const std::string& value) {
    Handle type = StringType();
    Handle space(H5Screate(H5S_SCALAR));
    const char* ptr = value.c_str();
    return WriteAttr(p, name, type.get(), space.get(), type.get(), &ptr, true);
  }

  Status EncodingAttrs(const std::string& p, const std::string& type, const std::string& version) {
    CC_RETURN_IF_ERROR(StringAttr(p, "encoding-type", type));
    return StringAttr(p, "encoding-version", version);
  }

  // Creates a dataset and writes all of it (when it has elements).
  Status CreateAndWrite(const std::string& p, hid_t file_type, hid_t mem_type,
                        const std::vector<hsize_t>& dims, hid_t dcpl, const void* data, int64_t n) {
    CC_RETURN_IF_ERROR(CheckNewPath(p));
    Handle space(dims.empty()
                     ? H5Screate(H5S_SCALAR)
                     : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
    if (!space.valid()) return Fail("cannot create a dataspace for '" + p + "'");
    Handle own_dcpl;
    if (dcpl == H5P_DEFAULT) {
      own_dcpl = Handle(H5Pcreate(H5P_DATASET_CREATE));
      dcpl = own_dcpl.get();
    }
    H5Pset_obj_track_times(dcpl, 0);  // no timestamps: the same input, the same bytes
    Handle ds(
        H5Dcreate2(file, Key(p).c_str(), file_type, space.get(), H5P_DEFAULT, dcpl, H5P_DEFAULT));
    if (!ds.valid()) return Fail("cannot create dataset '" + p + "'");
    if (n > 0 && H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
      return Fail("cannot write dataset '" + p + "'");
    return CheckIo("cannot write dataset '" + p + "'");
  }

  Result<std::vector<libdeflate_compressor*>*> Compressors(int level, size_t n) {
    auto& list = compressors[level];
    while (list.size() < n) {
      libdeflate_compressor* c = libdeflate_alloc_compressor(level);
      if (!c) return Status::Internal(path + ": out of memory for a gzip compressor");
      list.push_back(c);
    }
    return &list;
  }

  // Compresses `chunks` (each chunk_bytes long) on up to `threads` threads.
  Status Encode(std::vector<EncodedChunk>& chunks, size_t chunk_bytes, int level) {
    size_t n_threads =
        std::max<size_t>(1, std::min(chunks.size(), static_cast<size_t>(std::max(1, threads))));
    CC_ASSIGN_OR_RETURN(auto* comps, Compressors(level, n_threads));
    for (auto& c : chunks) c.packed.resize(chunk_bytes);
    ParallelFor(chunks.size(), static_cast<int>(n_threads), 1, [&](int worker, size_t i) {
      EncodedChunk& c = chunks[i];
      // Room for one byte less than the input: a chunk that does not shrink is stored
      // raw with its filter skipped, as HDF5's own deflate filter does.
      size_t n = libdeflate_zlib_compress((*comps)[static_cast<size_t>(worker)], c.raw, chunk_bytes,
                                          c.packed.data(), chunk_bytes - 1);
      c.compressed = n > 0;
      c.packed.resize(n);
    });
    return Status::Ok();
  }

  // Writes whole chunks starting at element a.written.
  Status WriteChunks(const std::string& p, Appendable& a, std::vector<EncodedChunk>& chunks) {
    if (chunks.empty()) return Status::Ok();
    size_t chunk_bytes = static_cast<size_t>(a.chunk) * a.elem_size;
    if (a.gzip_level > 0) CC_RETURN_IF_ERROR(Encode(chunks, chunk_bytes, a.gzip_level));
    Hdf5Lock lock(Hdf5Mutex());
    for (auto& c : chunks) {
      hsize_t offset = static_cast<hsize_t>(a.written);
      uint32_t filter_mask = a.gzip_level > 0 && !c.compressed ? 1u : 0u;
      const void* bytes = c.compressed ? static_cast<const void*>(c.packed.data()) : c.raw;
      size_t n = c.compressed ? c.packed.size() : chunk_bytes;
      if (H5Dwrite_chunk(a.dataset.get(), H5P_DEFAULT, filter_mask, &offset, n, bytes) < 0)
        return Fail("cannot write to '" + p + "'");
      a.written += a.chunk;
    }
    return CheckIo("cannot write to '" + p + "'");
  }

  // Writes the last, partial chunk of every appendable dataset (zero-padded to a
  // whole chunk, as HDF5 stores edge chunks).
  Status FlushAppendables() {
    for (auto& [p, a] : appendables) {
      if (a.size == a.written) continue;
      size_t chunk_bytes = static_cast<size_t>(a.chunk) * a.elem_size;
      a.pending.resize(chunk_bytes, 0);
      std::vector<EncodedChunk> chunks(1);
      chunks[0].raw = a.pending.data();
      CC_RETURN_IF_ERROR(WriteChunks(p, a, chunks));
      a.written = a.size;
      a.pending.clear();
    }
    return Status::Ok();
  }

  // Closes everything; the first error wins.
  Status CloseAll() {
    Hdf5Lock lock(Hdf5Mutex());
    Status s = io_error.ok() ? FlushAppendables() : io_error;
    appendables.clear();
    fixed_arrays.clear();
    if (file >= 0) {
      // The driver never lets a write fail inside HDF5 (write_driver.h), so flushing
      // and closing work even on a full disk; the error it recorded is reported here.
      if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0 && s.ok()) s = Fail("cannot flush the file");
      if (s.ok()) s = CheckIo("cannot write the file");
      if (H5Fclose(file) < 0 && s.ok()) s = Fail("cannot close the file");
      file = H5I_INVALID_HID;
      if (s.ok()) s = CheckIo("cannot close the file");
    }
    closed = true;
    return s;
  }
};

Writer::Writer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Writer::~Writer() {
  if (impl_ && !impl_->closed) (void)impl_->CloseAll();
}

Result<std::unique_ptr<Writer>> Writer::Create(const std::string& path, uint64_t align) {
  InitHdf5();
  Hdf5Lock lock(Hdf5Mutex());
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  unsigned hw = std::thread::hardware_concurrency();
  impl->threads = static_cast<int>(std::clamp(hw, 1u, 8u));
  Handle fapl(MakeWriteAccessList(&impl->os_error));
  if (!fapl.valid()) return Status::Internal("cannot set up HDF5's file driver");
  if (align > 0 && H5Pset_alignment(fapl.get(), align, align) < 0)
    return Status::Internal("cannot set HDF5's alignment");
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (id < 0) {
    std::string reason = Hdf5ErrorDetail();
    return Status::IoError("cannot create '" + path + "'" + (reason.empty() ? "" : ": " + reason));
  }
  impl->file = id;
  CC_RETURN_IF_ERROR(impl->EncodingAttrs("/", "anndata", "0.1.0"));
  CC_RETURN_IF_ERROR(impl->CheckIo("cannot write"));
  return std::unique_ptr<Writer>(new Writer(std::move(impl)));
}

void Writer::SetCompressionThreads(int n) { impl_->threads = std::max(1, n); }

Status Writer::CreateGroup(const std::string& path, const std::string& encoding_type,
                           const std::string& encoding_version) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  Hdf5Lock lock(Hdf5Mutex());
  CC_RETURN_IF_ERROR(impl_->CheckNewPath(path));
  Handle gcpl(H5Pcreate(H5P_GROUP_CREATE));
  H5Pset_obj_track_times(gcpl.get(), 0);
  Handle g(H5Gcreate2(impl_->file, Key(path).c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT));
  if (!g.valid()) return impl_->Fail("cannot create group '" + path + "'");
  if (!encoding_type.empty())
    CC_RETURN_IF_ERROR(impl_->StringAttr(path, "encoding-type", encoding_type));
  if (!encoding_version.empty())
    CC_RETURN_IF_ERROR(impl_->StringAttr(path, "encoding-version", encoding_version));
  return Status::Ok();
}

Status Writer::SetStringAttr(const std::string& path, const std::string& name,
                             const std::string& value) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  Hdf5Lock lock(Hdf5Mutex());
  return impl_->StringAttr(path, name, value);
}

Status Writer::SetStringListAttr(const std::string& path, const std::string& name,
                                 const std::vector<std::string>& values) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  Hdf5Lock lock(Hdf5Mutex());
  hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr));
  if (values.empty()) {
    // h5py writes an empty list as an empty float64 array; anndata reads that as
    // an empty column-order (and h5py cannot read an empty string array back).
    return impl_->WriteAttr(path, name, H5T_IEEE_F64LE, space.get(), H5T_NATIVE_DOUBLE, nullptr,
                            false);
  }
  Handle type = StringType();
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& v : values) ptrs.push_back(v.c_str());
  return impl_->WriteAttr(path, name, type.get(), space.get(), type.get(), ptrs.data(), true);
}

Status Writer::SetIntListAttr(const std::string& path, const std::string& name,
                              const std::vector<int64_t>& values) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  Hdf5Lock lock(Hdf5Mutex());
  hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr));
  return impl_->WriteAttr(path, name, H5T_STD_I64LE, space.get(), H5T_NATIVE_INT64, values.data(),
                          !values.empty());
}

Status Writer::SetBoolAttr(const std::string& path, const std::string& name, bool value) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  Hdf5Lock lock(Hdf5Mutex());
  Handle type = BoolType();
  Handle space(H5Screate(H5S_SCALAR));
  int8_t v = value ? 1 : 0;
  return impl_->WriteAttr(path, name, type.get(), space.get(), type.get(), &v, true);
}

Status Writer::WriteArray(const std::string& path, ElemType type, const void* data,
                          const std::vector<int64_t>& shape, const Compression& compression) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  if (!ValidElemType(type)) return impl_->Invalid("unknown element type for '" + path + "'");
  int64_t n = 1;
  std::vector<hsize_t> dims;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && n > (int64_t{1} << 62) / d))
      return impl_->Invalid("bad shape for '" + path + "'");
    n *= d;
    dims.push_back(static_cast<hsize_t>(d));
  }
  if (n > 0 && !data) return impl_->Invalid("no data for '" + path + "'");
  if (compression.gzip_level < 0 || compression.gzip_level > 9)
    return impl_->Invalid("gzip level " + std::to_string(compression.gzip_level) + " for '" + path +
                          "' is not within 0..9");
  Hdf5Lock lock(Hdf5Mutex());
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  // An empty array is stored contiguous whatever the compression (nothing to compress).
  if (compression.gzip_level > 0 && n > 0 && !dims.empty()) {
    if (compression.chunk_elements <= 0)
      return impl_->Invalid("compressing '" + path + "' needs chunk_elements > 0");
    // Whole trailing dimensions first, then as many leading rows as fit.
    std::vector<hsize_t> chunk(dims.size());
    int64_t room = compression.chunk_elements;
    for (size_t i = dims.size(); i-- > 0;) {
      int64_t c = std::clamp<int64_t>(room, 1, static_cast<int64_t>(dims[i]));
      chunk[i] = static_cast<hsize_t>(c);
      room = std::max<int64_t>(1, room / c);
    }
    if (H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) < 0 ||
        H5Pset_deflate(dcpl.get(), static_cast<unsigned>(compression.gzip_level)) < 0)
      return impl_->Fail("cannot set up compression for '" + path + "'");
  }
  CC_RETURN_IF_ERROR(
      impl_->CreateAndWrite(path, FileType(type), MemType(type), dims, dcpl.get(), data, n));
  // anndata's encoding of a number in uns is a scalar dataset marked numeric-scalar.
  return impl_->EncodingAttrs(path, dims.empty() ? "numeric-scalar" : "array", "0.2.0");
}

Status Writer::CreateFixedArray(const std::string& path, ElemType type, int64_t count) {
  return CreateFixedArray(path, type, std::vector<int64_t>{count});
}

Status Writer::CreateFixedArray(const std::string& path, ElemType type,
                                const std::vector<int64_t>& shape) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  if (!ValidElemType(type)) return impl_->Invalid("unknown element type for '" + path + "'");
  if (shape.empty() || shape.size() > 2) return impl_->Invalid("bad shape for '" + path + "'");
  int64_t count = 1;
  std::vector<hsize_t> dims;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && count > (int64_t{1} << 58) / d))
      return impl_->Invalid("bad size for '" + path + "'");
    count *= d;
    dims.push_back(static_cast<hsize_t>(d));
  }
  Hdf5Lock lock(Hdf5Mutex());
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  // Space reserved at creation, never pre-filled: the slices written later are the only
  // writes of the data, so a multi-gigabyte layer costs one pass over the disk.
  if (H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS) < 0 ||
      H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY) < 0 ||
      H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER) < 0)
    return impl_->Fail("cannot set up '" + path + "'");
  CC_RETURN_IF_ERROR(
      impl_->CreateAndWrite(path, FileType(type), MemType(type), dims, dcpl.get(), nullptr, 0));
  Handle ds(H5Dopen2(impl_->file, Key(path).c_str(), H5P_DEFAULT));
  if (!ds.valid()) return impl_->Fail("cannot open dataset '" + path + "'");
  FixedArray& a = impl_->fixed_arrays[Key(path)];
  a.dataset = std::move(ds);
  a.type = type;
  a.size = count;
  a.row = shape.size() == 2 ? std::max<int64_t>(1, shape[1]) : 1;
  return impl_->EncodingAttrs(path, "array", "0.2.0");
}

Status Writer::WriteSlice(const std::string& path, int64_t offset, const void* data,
                          int64_t count) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  auto it = impl_->fixed_arrays.find(Key(path));
  if (it == impl_->fixed_arrays.end())
    return impl_->Invalid("'" + path + "' is not an array created by CreateFixedArray");
  FixedArray& a = it->second;
  if (offset < 0 || count < 0 || offset > a.size || count > a.size - offset)
    return impl_->Invalid("slice [" + std::to_string(offset) + ", +" + std::to_string(count) +
                          ") is outside '" + path + "' (" + std::to_string(a.size) + " elements)");
  if (count == 0) return Status::Ok();
  if (!data) return impl_->Invalid("no data for '" + path + "'");
  if (offset % a.row != 0 || count % a.row != 0)
    return impl_->Invalid("slice [" + std::to_string(offset) + ", +" + std::to_string(count) +
                          ") of '" + path + "' is not whole rows");
  Hdf5Lock lock(Hdf5Mutex());
  Handle file_space(H5Dget_space(a.dataset.get()));
  const hsize_t n = static_cast<hsize_t>(count);
  Handle mem_space(H5Screate_simple(1, &n, nullptr));
  // A 2-D array's slice is a block of whole rows.
  const bool rows = H5Sget_simple_extent_ndims(file_space.get()) == 2;
  const hsize_t start[2] = {static_cast<hsize_t>(offset / a.row), 0};
  const hsize_t extent[2] = {static_cast<hsize_t>(count / a.row), static_cast<hsize_t>(a.row)};
  const hsize_t start1 = static_cast<hsize_t>(offset);
  if (!file_space.valid() || !mem_space.valid() ||
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, rows ? start : &start1, nullptr,
                          rows ? extent : &n, nullptr) < 0)
    return impl_->Fail("cannot select a slice of '" + path + "'");
  if (H5Dwrite(a.dataset.get(), MemType(a.type), mem_space.get(), file_space.get(), H5P_DEFAULT,
               data) < 0)
    return impl_->Fail("cannot write to '" + path + "'");
  return impl_->CheckIo("cannot write to '" + path + "'");
}

Status Writer::WriteStrings(const std::string& path, const std::vector<std::string>& values) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& v : values) {
    if (std::memchr(v.data(), '\0', v.size()))
      return impl_->Invalid("a string for '" + path + "' contains a NUL character");
    ptrs.push_back(v.c_str());
  }
  // A variable-length string costs its bytes plus a 16-byte heap id in the dataset and
  // about 16 more in the global heap.
  size_t widest = 1, total = 0;
  for (const auto& v : values) {
    widest = std::max(widest, v.size());
    total += v.size();
  }
  const bool fixed = fixed_width_strings_ && widest * values.size() <= total + 32 * values.size();
  Hdf5Lock lock(Hdf5Mutex());
  if (fixed) {
    std::vector<char> packed(widest * values.size(), '\0');
    for (size_t i = 0; i < values.size(); ++i)
      std::memcpy(packed.data() + i * widest, values[i].data(), values[i].size());
    Handle type(H5Tcopy(H5T_C_S1));
    H5Tset_size(type.get(), widest);
    H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
    H5Tset_cset(type.get(), H5T_CSET_UTF8);
    CC_RETURN_IF_ERROR(impl_->CreateAndWrite(path, type.get(), type.get(), {values.size()},
                                             H5P_DEFAULT, packed.data(),
                                             static_cast<int64_t>(values.size())));
  } else {
    Handle type = StringType();
    CC_RETURN_IF_ERROR(impl_->CreateAndWrite(path, type.get(), type.get(), {values.size()},
                                             H5P_DEFAULT, ptrs.data(),
                                             static_cast<int64_t>(values.size())));
  }
  return impl_->EncodingAttrs(path, "string-array", "0.2.0");
}

Status Writer::WriteScalarString(const std::string& path, const std::string& value) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  if (std::memchr(value.data(), '\0', value.size()))
    return impl_->Invalid("the string for '" + path + "' contains a NUL character");
  Hdf5Lock lock(Hdf5Mutex());
  Handle type = StringType();
  const char* ptr = value.c_str();
  CC_RETURN_IF_ERROR(impl_->CreateAndWrite(path, type.get(), type.get(), {}, H5P_DEFAULT, &ptr, 1));
  return impl_->EncodingAttrs(path, "string", "0.2.0");
}

Status Writer::HardLink(const std::string& existing, const std::string& new_path) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  Hdf5Lock lock(Hdf5Mutex());
  if (Key(existing) == "/" || impl_->Kind(existing) == NodeKind::kMissing)
    return impl_->Invalid("cannot link to '" + existing + "': no such object");
  CC_RETURN_IF_ERROR(impl_->CheckNewPath(new_path));
  if (H5Lcreate_hard(impl_->file, Key(existing).c_str(), impl_->file, Key(new_path).c_str(),
                     H5P_DEFAULT, H5P_DEFAULT) < 0)
    return impl_->Fail("cannot link '" + new_path + "' to '" + existing + "'");
  return Status::Ok();
}

Status Writer::CreateAppendable(const std::string& path, ElemType type,
                                const Compression& compression) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  if (!ValidElemType(type)) return impl_->Invalid("unknown element type for '" + path + "'");
  if (compression.chunk_elements <= 0)
    return impl_->Invalid("appendable '" + path + "' needs chunk_elements > 0");
  if (compression.gzip_level < 0 || compression.gzip_level > 9)
    return impl_->Invalid("gzip level " + std::to_string(compression.gzip_level) + " for '" + path +
                          "' is not within 0..9");
  size_t elem = ElemSize(type);
  if (static_cast<uint64_t>(compression.chunk_elements) * elem >= (uint64_t{1} << 32))
    return impl_->Invalid("chunks of '" + path + "' must be smaller than 4 GB");
  Hdf5Lock lock(Hdf5Mutex());
  CC_RETURN_IF_ERROR(impl_->CheckNewPath(path));
  hsize_t dims = 0, maxdims = H5S_UNLIMITED,
          chunk = static_cast<hsize_t>(compression.chunk_elements);
  Handle space(H5Screate_simple(1, &dims, &maxdims));
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_obj_track_times(dcpl.get(), 0);
  if (H5Pset_chunk(dcpl.get(), 1, &chunk) < 0 ||
      (compression.gzip_level > 0 &&
       H5Pset_deflate(dcpl.get(), static_cast<unsigned>(compression.gzip_level)) < 0))
    return impl_->Fail("cannot set up chunks for '" + path + "'");
  Handle ds(H5Dcreate2(impl_->file, Key(path).c_str(), FileType(type), space.get(), H5P_DEFAULT,
                       dcpl.get(), H5P_DEFAULT));
  if (!ds.valid()) return impl_->Fail("cannot create dataset '" + path + "'");
  CC_RETURN_IF_ERROR(impl_->EncodingAttrs(path, "array", "0.2.0"));
  Appendable a;
  a.dataset = std::move(ds);
  a.type = type;
  a.elem_size = elem;
  a.chunk = compression.chunk_elements;
  a.gzip_level = compression.gzip_level;
  impl_->appendables.emplace(Key(path), std::move(a));
  return Status::Ok();
}

Status Writer::Append(const std::string& path, const void* data, int64_t count) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  auto it = impl_->appendables.find(Key(path));
  if (it == impl_->appendables.end())
    return impl_->Invalid("'" + path + "' is not a dataset made by CreateAppendable");
  if (count < 0 || (count > 0 && !data))
    return impl_->Invalid("bad data appended to '" + path + "'");
  if (count == 0) return Status::Ok();
  Appendable& a = it->second;
  const size_t es = a.elem_size;
  const size_t chunk_bytes = static_cast<size_t>(a.chunk) * es;
  const int64_t new_size = a.size + count;
  {
    Hdf5Lock lock(Hdf5Mutex());
    hsize_t extent = static_cast<hsize_t>(new_size);
    if (H5Dset_extent(a.dataset.get(), &extent) < 0)
      return impl_->Fail("cannot extend '" + path + "'");
  }
  const auto* src = static_cast<const uint8_t*>(data);
  int64_t remaining = count;
  std::vector<EncodedChunk> chunks;
  bool pending_full = false;
  if (!a.pending.empty()) {
    int64_t have = static_cast<int64_t>(a.pending.size() / es);
    int64_t take = std::min(remaining, a.chunk - have);
    a.pending.insert(a.pending.end(), src, src + static_cast<size_t>(take) * es);
    src += static_cast<size_t>(take) * es;
    remaining -= take;
    if (a.pending.size() == chunk_bytes) {
      pending_full = true;
      chunks.emplace_back().raw = a.pending.data();
    }
  }
  while (remaining >= a.chunk) {
    chunks.emplace_back().raw = src;
    src += chunk_bytes;
    remaining -= a.chunk;
  }
  CC_RETURN_IF_ERROR(impl_->WriteChunks(path, a, chunks));
  if (pending_full) a.pending.clear();
  a.pending.insert(a.pending.end(), src, src + static_cast<size_t>(remaining) * es);
  a.size = new_size;
  return Status::Ok();
}

Status Writer::WriteColumn(const std::string& group, const ColumnData& column) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  if (!ValidName(column.name))
    return impl_->Invalid("'" + column.name + "' is not a valid column name");
  const std::string path = Key(group) == "/" ? column.name : Key(group) + "/" + column.name;
  using Type = ColumnData::Type;
  switch (column.type) {
    case Type::kCategorical: {
      const auto n_cat = static_cast<int64_t>(column.labels.size());
      {
        std::vector<std::string> sorted = column.labels;
        std::sort(sorted.begin(), sorted.end());
        if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
          return impl_->Invalid("categorical column '" + column.name +
                                "' has duplicate categories");
      }
      for (size_t i = 0; i < column.codes.size(); ++i) {
        int32_t c = column.codes[i];
        if (c < -1 || c >= n_cat)
          return impl_->Invalid("categorical column '" + column.name + "' has code " +
                                std::to_string(c) + " at row " + std::to_string(i) + " but " +
                                std::to_string(n_cat) + " categories");
      }
      CC_RETURN_IF_ERROR(CreateGroup(path, "categorical", "0.2.0"));
      CC_RETURN_IF_ERROR(SetBoolAttr(path, "ordered", column.ordered));
      CC_RETURN_IF_ERROR(WriteStrings(path + "/categories", column.labels));
      // The smallest signed type that holds every code, as pandas chooses it.
      const std::vector<int64_t> shape = {static_cast<int64_t>(column.codes.size())};
      if (n_cat < 127) {
        std::vector<int8_t> codes(column.codes.begin(), column.codes.end());
        return WriteArray(path + "/codes", ElemType::kInt8, codes.data(), shape);
      }
      if (n_cat < 32767) {
        std::vector<int16_t> codes(column.codes.begin(), column.codes.end());
        return WriteArray(path + "/codes", ElemType::kInt16, codes.data(), shape);
      }
      return WriteArray(path + "/codes", ElemType::kInt32, column.codes.data(), shape);
    }
    case Type::kStrings:
      return WriteStrings(path, column.labels);
    case Type::kInt64:
      return WriteArray(path, ElemType::kInt64, column.ints.data(),
                        {static_cast<int64_t>(column.ints.size())});
    case Type::kFloat64:
      return WriteArray(path, ElemType::kFloat64, column.floats.data(),
                        {static_cast<int64_t>(column.floats.size())});
    case Type::kBool: {
      std::vector<int8_t> values(column.ints.size());
      for (size_t i = 0; i < values.size(); ++i) values[i] = column.ints[i] != 0;
      Hdf5Lock lock(Hdf5Mutex());
      Handle type = BoolType();
      CC_RETURN_IF_ERROR(impl_->CreateAndWrite(path, type.get(), type.get(), {values.size()},
                                               H5P_DEFAULT, values.data(),
                                               static_cast<int64_t>(values.size())));
      return impl_->EncodingAttrs(path, "array", "0.2.0");
    }
  }
  return impl_->Invalid("column '" + column.name + "' has an unknown type");
}

namespace {
size_t ColumnRows(const ColumnData& c) {
  switch (c.type) {
    case ColumnData::Type::kCategorical:
      return c.codes.size();
    case ColumnData::Type::kStrings:
      return c.labels.size();
    case ColumnData::Type::kInt64:
    case ColumnData::Type::kBool:
      return c.ints.size();
    case ColumnData::Type::kFloat64:
      return c.floats.size();
  }
  return 0;
}
}  // namespace

Status Writer::WriteDataFrame(const std::string& path, const std::vector<std::string>& index,
                              const std::vector<ColumnData>& columns) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  std::vector<std::string> names;
  for (const auto& c : columns) {
    if (!ValidName(c.name) || c.name == "_index")
      return impl_->Invalid("'" + c.name + "' cannot be a column name of '" + path + "'");
    if (std::find(names.begin(), names.end(), c.name) != names.end())
      return impl_->Invalid("column '" + c.name + "' appears twice in '" + path + "'");
    if (ColumnRows(c) != index.size())
      return impl_->Invalid("column '" + c.name + "' of '" + path + "' has " +
                            std::to_string(ColumnRows(c)) + " rows but the index has " +
                            std::to_string(index.size()));
    names.push_back(c.name);
  }
  CC_RETURN_IF_ERROR(CreateGroup(path, "dataframe", "0.2.0"));
  CC_RETURN_IF_ERROR(SetStringAttr(path, "_index", "_index"));
  CC_RETURN_IF_ERROR(SetStringListAttr(path, "column-order", names));
  CC_RETURN_IF_ERROR(WriteStrings(Key(path) + "/_index", index));
  for (const auto& c : columns) CC_RETURN_IF_ERROR(WriteColumn(path, c));
  return Status::Ok();
}

Status Writer::MarkSparse(const std::string& path, bool csr, int64_t n_rows, int64_t n_cols) {
  CC_RETURN_IF_ERROR(impl_->CheckOpen());
  if (n_rows < 0 || n_cols < 0) return impl_->Invalid("negative shape for '" + path + "'");
  {
    Hdf5Lock lock(Hdf5Mutex());
    if (impl_->Kind(path) != NodeKind::kGroup)
      return impl_->Invalid("'" + path + "' is not a group holding a sparse matrix");
  }
  CC_RETURN_IF_ERROR(SetStringAttr(path, "encoding-type", csr ? "csr_matrix" : "csc_matrix"));
  CC_RETURN_IF_ERROR(SetStringAttr(path, "encoding-version", "0.1.0"));
  return SetIntListAttr(path, "shape", {n_rows, n_cols});
}

Status Writer::Close() {
  if (impl_->closed) return Status::Ok();
  return impl_->CloseAll();
}

}  // namespace cellcube::h5ad
