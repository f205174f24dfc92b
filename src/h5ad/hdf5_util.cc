#include "h5ad/hdf5_util.h"

#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "h5ad/lzf_filter.h"

namespace cellcube::h5ad {

namespace {

// The lock is held across fork() (pthread_atfork), so a child process never starts with
// HDF5 in the middle of a call from a thread it does not have; the child gets a fresh
// lock, because the copied one stays owned by the parent's thread.
std::recursive_mutex* g_hdf5_mutex = nullptr;

void LockBeforeFork() { g_hdf5_mutex->lock(); }
void UnlockInParent() { g_hdf5_mutex->unlock(); }
void FreshLockInChild() { g_hdf5_mutex = new std::recursive_mutex; }

}  // namespace

std::recursive_mutex& Hdf5Mutex() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_hdf5_mutex = new std::recursive_mutex;
    pthread_atfork(LockBeforeFork, UnlockInParent, FreshLockInChild);
  });
  return *g_hdf5_mutex;
}

Hdf5Lock::Hdf5Lock(std::recursive_mutex& mutex) : lock_(mutex) {
  thread_local bool quiet = false;
  if (!quiet) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    quiet = true;
  }
}

void InitHdf5() {
  static std::once_flag once;
  std::call_once(once, [] {
    Hdf5Lock lock(Hdf5Mutex());
    H5open();
    RegisterLzfFilter();
  });
}

namespace {

struct ErrorWalk {
  std::string innermost;
  int os_errno = 0;
};

// Walking upward, frame 0 is where the error was detected (the innermost call); a
// low-level file call records the operating system's errno in its message.
herr_t CollectError(unsigned n, const H5E_error2_t* err, void* data) {
  auto* w = static_cast<ErrorWalk*>(data);
  if (!err->desc) return 0;
  const std::string desc = err->desc;
  if (n == 0) w->innermost = desc;
  if (w->os_errno == 0) {
    const auto pos = desc.find("errno = ");
    if (pos != std::string::npos) w->os_errno = std::atoi(desc.c_str() + pos + 8);
  }
  return 0;
}

}  // namespace

std::string Hdf5ErrorDetail() {
  ErrorWalk w;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, CollectError, &w);
  if (w.os_errno > 0) return std::strerror(w.os_errno);
  // HDF5's deflate filter says "inflate() failed": say what it means, in the words
  // cellcube's own chunk reader and `inspect --check` use.
  if (w.innermost.find("inflate() failed") != std::string::npos)
    return "a chunk does not inflate (damaged gzip data)";
  return w.innermost;
}

void Handle::Reset() {
  if (id_ < 0) return;
  Hdf5Lock lock(Hdf5Mutex());
  switch (H5Iget_type(id_)) {
    case H5I_FILE:
      H5Fclose(id_);
      break;
    case H5I_GROUP:
      H5Gclose(id_);
      break;
    case H5I_DATASET:
      H5Dclose(id_);
      break;
    case H5I_DATATYPE:
      H5Tclose(id_);
      break;
    case H5I_DATASPACE:
      H5Sclose(id_);
      break;
    case H5I_ATTR:
      H5Aclose(id_);
      break;
    case H5I_GENPROP_LST:
      H5Pclose(id_);
      break;
    default:
      H5Idec_ref(id_);
      break;
  }
  id_ = H5I_INVALID_HID;
}

NodeKind GetNodeKind(hid_t loc, const std::string& path) {
  // H5Lexists fails on a path whose intermediate component is missing, so walk it.
  size_t pos = 0;
  while (true) {
    size_t slash = path.find('/', pos);
    std::string prefix = path.substr(0, slash);
    if (prefix.empty() || H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0)
      return NodeKind::kMissing;
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  hid_t obj = H5Oopen(loc, path.c_str(), H5P_DEFAULT);
  if (obj < 0) return NodeKind::kMissing;
  Handle h(obj);
  switch (H5Iget_type(obj)) {
    case H5I_GROUP:
      return NodeKind::kGroup;
    case H5I_DATASET:
      return NodeKind::kDataset;
    default:
      return NodeKind::kOther;
  }
}

Result<Handle> OpenGroup(hid_t loc, const std::string& path) {
  if (GetNodeKind(loc, path) != NodeKind::kGroup)
    return Status::NotFound("no group '" + path + "'");
  hid_t g = H5Gopen2(loc, path.c_str(), H5P_DEFAULT);
  if (g < 0) return Status::Corrupt("cannot open group '" + path + "': " + Hdf5ErrorDetail());
  return Handle(g);
}

Result<Handle> OpenDataset(hid_t loc, const std::string& path) {
  if (GetNodeKind(loc, path) != NodeKind::kDataset)
    return Status::NotFound("no dataset '" + path + "'");
  hid_t d = H5Dopen2(loc, path.c_str(), H5P_DEFAULT);
  if (d < 0) return Status::Corrupt("cannot open dataset '" + path + "': " + Hdf5ErrorDetail());
  return Handle(d);
}

namespace {
herr_t CollectName(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> ListGroup(hid_t group) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &idx, CollectName, &names);
  return names;
}

bool HasAttr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

namespace {

// Reads `n` string elements of `type` from an attribute or dataset via `read`.
template <typename ReadFn>
Result<std::vector<std::string>> ReadStrings(hid_t file_type, size_t n, ReadFn read) {
  std::vector<std::string> out;
  out.reserve(n);
  Handle mem(H5Tcopy(H5T_C_S1));
  H5Tset_cset(mem.get(), H5Tget_cset(file_type));
  if (H5Tis_variable_str(file_type) > 0) {
    H5Tset_size(mem.get(), H5T_VARIABLE);
    std::vector<char*> ptrs(n, nullptr);
    if (read(mem.get(), ptrs.data()) < 0)
      return Status::Corrupt("cannot read strings: " + Hdf5ErrorDetail());
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      free(p);  // HDF5 allocates each vlen string with malloc
    }
    return out;
  }
  size_t width = H5Tget_size(file_type);
  if (width == 0 || width > (1u << 20)) return Status::Corrupt("string width out of range");
  H5Tset_size(mem.get(), width);
  H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
  std::vector<char> buf(n * width);
  if (read(mem.get(), buf.data()) < 0)
    return Status::Corrupt("cannot read strings: " + Hdf5ErrorDetail());
  for (size_t i = 0; i < n; ++i) {
    const char* s = buf.data() + i * width;
    out.emplace_back(s, strnlen(s, width));
  }
  return out;
}

int64_t SpaceSize(hid_t space) {
  hssize_t n = H5Sget_simple_extent_npoints(space);
  return n < 0 ? 0 : static_cast<int64_t>(n);
}

}  // namespace

std::optional<std::string> ReadStringAttr(hid_t obj, const char* name) {
  auto list = ReadStringListAttr(obj, name);
  if (list.size() != 1) return std::nullopt;
  return list[0];
}

std::vector<std::string> ReadStringListAttr(hid_t obj, const char* name) {
  if (!HasAttr(obj, name)) return {};
  Handle attr(H5Aopen(obj, name, H5P_DEFAULT));
  if (!attr.valid()) return {};
  Handle type(H5Aget_type(attr.get()));
  if (H5Tget_class(type.get()) != H5T_STRING) return {};
  Handle space(H5Aget_space(attr.get()));
  auto n = static_cast<size_t>(SpaceSize(space.get()));
  auto res = ReadStrings(type.get(), n,
                         [&](hid_t mem, void* buf) { return H5Aread(attr.get(), mem, buf); });
  if (!res.ok()) return {};
  return std::move(res).value();
}

std::optional<std::vector<int64_t>> ReadIntListAttr(hid_t obj, const char* name) {
  if (!HasAttr(obj, name)) return std::nullopt;
  Handle attr(H5Aopen(obj, name, H5P_DEFAULT));
  Handle type(H5Aget_type(attr.get()));
  H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) return std::nullopt;
  Handle space(H5Aget_space(attr.get()));
  int64_t n = SpaceSize(space.get());
  if (n < 0 || n > 64) return std::nullopt;
  std::vector<int64_t> out(static_cast<size_t>(n));
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, out.data()) < 0) return std::nullopt;
  return out;
}

std::optional<bool> ReadBoolAttr(hid_t obj, const char* name) {
  if (!HasAttr(obj, name)) return std::nullopt;
  Handle attr(H5Aopen(obj, name, H5P_DEFAULT));
  Handle type(H5Aget_type(attr.get()));
  Handle space(H5Aget_space(attr.get()));
  if (SpaceSize(space.get()) != 1) return std::nullopt;
  TypeClass cls = ClassifyType(type.get());
  if (cls != TypeClass::kBool && cls != TypeClass::kInteger && cls != TypeClass::kUnsigned)
    return std::nullopt;
  int8_t v = 0;
  hid_t mem = cls == TypeClass::kBool ? type.get() : H5T_NATIVE_INT8;
  if (H5Tget_size(mem) != 1) mem = H5T_NATIVE_INT8;
  if (H5Aread(attr.get(), mem, &v) < 0) return std::nullopt;
  return v != 0;
}

TypeClass ClassifyType(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return H5Tget_sign(type) == H5T_SGN_NONE ? TypeClass::kUnsigned : TypeClass::kInteger;
    case H5T_FLOAT:
      return TypeClass::kFloat;
    case H5T_STRING:
      return TypeClass::kString;
    case H5T_REFERENCE:
      return TypeClass::kReference;
    case H5T_COMPOUND:
      return TypeClass::kCompound;
    case H5T_ENUM: {
      // h5py writes numpy bool as an int8 enum {FALSE = 0, TRUE = 1}.
      if (H5Tget_nmembers(type) != 2) return TypeClass::kOther;
      char* a = H5Tget_member_name(type, 0);
      char* b = H5Tget_member_name(type, 1);
      bool is_bool = a && b && std::strcmp(a, "FALSE") == 0 && std::strcmp(b, "TRUE") == 0;
      H5free_memory(a);
      H5free_memory(b);
      return is_bool ? TypeClass::kBool : TypeClass::kOther;
    }
    default:
      return TypeClass::kOther;
  }
}

std::string TypeName(hid_t type) {
  size_t bits = H5Tget_size(type) * 8;
  switch (ClassifyType(type)) {
    case TypeClass::kInteger:
      return "int" + std::to_string(bits);
    case TypeClass::kUnsigned:
      return "uint" + std::to_string(bits);
    case TypeClass::kFloat:
      return "float" + std::to_string(bits);
    case TypeClass::kBool:
      return "bool";
    case TypeClass::kString:
      return "string";
    case TypeClass::kReference:
      return "reference";
    case TypeClass::kCompound:
      return "compound";
    default:
      return "other";
  }
}

std::vector<int64_t> DatasetShape(hid_t dataset) {
  Handle space(H5Dget_space(dataset));
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank <= 0) return {};
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

int64_t DatasetSize(hid_t dataset) {
  Handle space(H5Dget_space(dataset));
  return SpaceSize(space.get());
}

namespace {
Status ReadSelection(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& start,
                     const std::vector<hsize_t>& count, void* out) {
  Handle file_space(H5Dget_space(dataset));
  int rank = static_cast<int>(start.size());
  if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(),
                          nullptr) < 0)
    return Status::Corrupt("bad selection: " + Hdf5ErrorDetail());
  Handle mem_space(H5Screate_simple(rank, count.data(), nullptr));
  if (H5Dread(dataset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0) {
    std::string detail = Hdf5ErrorDetail();
    return Status::Corrupt("read failed" + (detail.empty() ? "" : ": " + detail));
  }
  return Status::Ok();
}
}  // namespace

Status ReadRange(hid_t dataset, hid_t mem_type, int64_t begin, int64_t count, void* out) {
  if (count == 0) return Status::Ok();
  auto shape = DatasetShape(dataset);
  if (shape.size() != 1) {
    // Whole N-D dataset, row-major.
    if (H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
      return Status::Corrupt("read failed: " + Hdf5ErrorDetail());
    return Status::Ok();
  }
  if (begin < 0 || count < 0 || begin + count > shape[0])
    return Status::Corrupt("range [" + std::to_string(begin) + ", " +
                           std::to_string(begin + count) + ") outside a dataset of " +
                           std::to_string(shape[0]) + " elements");
  return ReadSelection(dataset, mem_type, {static_cast<hsize_t>(begin)},
                       {static_cast<hsize_t>(count)}, out);
}

Status ReadRows(hid_t dataset, hid_t mem_type, int64_t row_begin, int64_t n_rows, void* out) {
  auto shape = DatasetShape(dataset);
  if (shape.size() != 2) return Status::Corrupt("expected a 2-D dataset");
  if (n_rows == 0 || shape[1] == 0) return Status::Ok();
  return ReadSelection(dataset, mem_type, {static_cast<hsize_t>(row_begin), 0},
                       {static_cast<hsize_t>(n_rows), static_cast<hsize_t>(shape[1])}, out);
}

Result<std::vector<std::string>> ReadStringDataset(hid_t dataset) {
  Handle type(H5Dget_type(dataset));
  if (H5Tget_class(type.get()) != H5T_STRING) return Status::Corrupt("expected strings");
  auto n = static_cast<size_t>(DatasetSize(dataset));
  const size_t width = H5Tget_size(type.get());
  if (H5Tis_variable_str(type.get()) <= 0 && width > 0 && width <= 4096 &&
      H5Sget_simple_extent_ndims(Handle(H5Dget_space(dataset)).get()) == 1) {
    // Fixed-width strings through a small reused buffer: tens of thousands of gene ids
    // without a copy of the whole array in fresh memory first.
    Handle mem(H5Tcopy(H5T_C_S1));
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    H5Tset_size(mem.get(), width);
    H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
    const size_t per_read = std::max<size_t>(1, (size_t{64} << 10) / width);
    std::vector<char> buf(per_read * width);
    std::vector<std::string> out;
    out.reserve(n);
    for (size_t begin = 0; begin < n; begin += per_read) {
      const size_t count = std::min(per_read, n - begin);
      CC_RETURN_IF_ERROR(ReadRange(dataset, mem.get(), static_cast<int64_t>(begin),
                                   static_cast<int64_t>(count), buf.data()));
      for (size_t i = 0; i < count; ++i) {
        const char* p = buf.data() + i * width;
        out.emplace_back(p, strnlen(p, width));
      }
    }
    return out;
  }
  return ReadStrings(type.get(), n, [&](hid_t mem, void* buf) {
    return n == 0 ? 0 : H5Dread(dataset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  });
}

Result<std::vector<double>> ReadDoubleDataset(hid_t dataset) {
  std::vector<double> out(static_cast<size_t>(DatasetSize(dataset)));
  CC_RETURN_IF_ERROR(
      ReadRange(dataset, H5T_NATIVE_DOUBLE, 0, static_cast<int64_t>(out.size()), out.data()));
  return out;
}

Result<std::vector<int64_t>> ReadInt64Dataset(hid_t dataset) {
  Handle type(H5Dget_type(dataset));
  std::vector<int64_t> out(static_cast<size_t>(DatasetSize(dataset)));
  hid_t mem = ClassifyType(type.get()) == TypeClass::kBool ? type.get() : H5T_NATIVE_INT64;
  if (mem != H5T_NATIVE_INT64) {
    // Booleans: read their 1-byte enum as is, then widen.
    std::vector<int8_t> bytes(out.size());
    CC_RETURN_IF_ERROR(ReadRange(dataset, mem, 0, static_cast<int64_t>(out.size()), bytes.data()));
    for (size_t i = 0; i < out.size(); ++i) out[i] = bytes[i] != 0;
    return out;
  }
  CC_RETURN_IF_ERROR(ReadRange(dataset, mem, 0, static_cast<int64_t>(out.size()), out.data()));
  return out;
}

namespace {
Result<Handle> CompoundMemberType(hid_t dataset, const std::string& field) {
  Handle type(H5Dget_type(dataset));
  int idx = H5Tget_member_index(type.get(), field.c_str());
  if (idx < 0) return Status::NotFound("no field '" + field + "'");
  return Handle(H5Tget_member_type(type.get(), static_cast<unsigned>(idx)));
}

template <typename T>
Result<std::vector<T>> ReadCompoundNumbers(hid_t dataset, const std::string& field, hid_t native) {
  CC_ASSIGN_OR_RETURN(Handle member, CompoundMemberType(dataset, field));
  TypeClass cls = ClassifyType(member.get());
  if (cls != TypeClass::kInteger && cls != TypeClass::kUnsigned && cls != TypeClass::kFloat &&
      cls != TypeClass::kBool)
    return Status::Corrupt("field '" + field + "' is not numeric");
  std::vector<T> out(static_cast<size_t>(DatasetSize(dataset)));
  if (out.empty()) return out;
  Handle mem(H5Tcreate(H5T_COMPOUND, sizeof(T)));
  if (cls == TypeClass::kBool) {
    std::vector<int8_t> bytes(out.size());
    Handle mem8(H5Tcreate(H5T_COMPOUND, 1));
    H5Tinsert(mem8.get(), field.c_str(), 0, member.get());
    if (H5Dread(dataset, mem8.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) < 0)
      return Status::Corrupt("cannot read field '" + field + "': " + Hdf5ErrorDetail());
    for (size_t i = 0; i < out.size(); ++i) out[i] = bytes[i] != 0;
    return out;
  }
  H5Tinsert(mem.get(), field.c_str(), 0, native);
  if (H5Dread(dataset, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    return Status::Corrupt("cannot read field '" + field + "': " + Hdf5ErrorDetail());
  return out;
}
}  // namespace

Result<std::vector<std::string>> ReadCompoundStrings(hid_t dataset, const std::string& field) {
  CC_ASSIGN_OR_RETURN(Handle member, CompoundMemberType(dataset, field));
  if (H5Tget_class(member.get()) != H5T_STRING)
    return Status::Corrupt("field '" + field + "' is not a string");
  auto n = static_cast<size_t>(DatasetSize(dataset));
  return ReadStrings(member.get(), n, [&](hid_t mem_str, void* buf) -> herr_t {
    if (n == 0) return 0;
    Handle mem(H5Tcreate(H5T_COMPOUND, H5Tget_size(mem_str)));
    H5Tinsert(mem.get(), field.c_str(), 0, mem_str);
    return H5Dread(dataset, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  });
}

Result<std::vector<double>> ReadCompoundDoubles(hid_t dataset, const std::string& field) {
  return ReadCompoundNumbers<double>(dataset, field, H5T_NATIVE_DOUBLE);
}

Result<std::vector<int64_t>> ReadCompoundInt64(hid_t dataset, const std::string& field) {
  return ReadCompoundNumbers<int64_t>(dataset, field, H5T_NATIVE_INT64);
}

Result<std::string> DescribeFilters(hid_t dataset) {
  Handle dcpl(H5Dget_create_plist(dataset));
  int n = H5Pget_nfilters(dcpl.get());
  if (n <= 0) return std::string("none");
  std::string out;
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, cd[8] = {0};
    size_t n_cd = 8;
    char name[128] = {0};
    unsigned config = 0;
    H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &n_cd, cd,
                                     sizeof name, name, &config);
    std::string label;
    switch (id) {
      case H5Z_FILTER_DEFLATE:
        label = "gzip(" + std::to_string(n_cd ? cd[0] : 0) + ")";
        break;
      case H5Z_FILTER_SHUFFLE:
        label = "shuffle";
        break;
      case H5Z_FILTER_FLETCHER32:
        label = "fletcher32";
        break;
      case H5Z_FILTER_SZIP:
        label = "szip";
        break;
      case H5Z_FILTER_NBIT:
        label = "nbit";
        break;
      case H5Z_FILTER_SCALEOFFSET:
        label = "scaleoffset";
        break;
      case kLzfFilterId:
        label = "lzf";
        break;
      default:
        label = "filter " + std::to_string(id) + (name[0] ? std::string(" (") + name + ")" : "");
    }
    if (H5Zfilter_avail(id) <= 0)
      return Status::Unsupported(
          "compressed with HDF5 " + label +
          ", which cellcube cannot decode; re-save the file with gzip or "
          "lzf compression (e.g. adata.write_h5ad(path, compression='gzip'))");
    if (!out.empty()) out += "+";
    out += label;
  }
  return out;
}

std::vector<int64_t> ChunkShape(hid_t dataset) {
  Handle dcpl(H5Dget_create_plist(dataset));
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED) return {};
  hsize_t dims[32];
  int rank = H5Pget_chunk(dcpl.get(), 32, dims);
  if (rank <= 0) return {};
  return std::vector<int64_t>(dims, dims + rank);
}

}  // namespace cellcube::h5ad
