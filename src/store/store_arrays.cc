#include "store/store_arrays.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "store/store_layout.h"
#include "store/store_loader.h"

namespace cellcube {

const char* ArrayTypeName(ArrayType t) {
  switch (t) {
    case ArrayType::kInt32:
      return "int32";
    case ArrayType::kInt64:
      return "int64";
    case ArrayType::kUInt16:
      return "uint16";
    case ArrayType::kUInt32:
      return "uint32";
    case ArrayType::kFloat32:
      return "float32";
    case ArrayType::kFloat64:
      return "float64";
    case ArrayType::kUInt8:
      return "uint8";
  }
  return "?";
}

size_t ArrayWidth(ArrayType t) {
  if (t == ArrayType::kUInt8) return 1;
  if (t == ArrayType::kUInt16) return 2;
  return t == ArrayType::kInt64 || t == ArrayType::kFloat64 ? 8 : 4;
}

namespace {

bool ParseType(const std::string& dtype, ArrayType* out) {
  for (ArrayType t : {ArrayType::kInt32, ArrayType::kInt64, ArrayType::kUInt16, ArrayType::kUInt32,
                      ArrayType::kFloat32, ArrayType::kFloat64, ArrayType::kUInt8})
    if (dtype == ArrayTypeName(t)) {
      *out = t;
      return true;
    }
  return false;
}

std::string TypeList(const std::vector<ArrayType>& types) {
  std::string out;
  for (size_t i = 0; i < types.size(); ++i)
    out += std::string(i ? (i + 1 == types.size() ? " or " : ", ") : "") + ArrayTypeName(types[i]);
  return out;
}

// One array: its type one of `allowed`, `expected` elements (unless < 0, as `from` says),
// and when in place, its bytes inside the file.
Result<LocatedArray> Locate(const h5ad::File& file, const std::string& path,
                            const std::vector<ArrayType>& allowed, int64_t expected,
                            const char* from, uint64_t file_size) {
  CC_ASSIGN_OR_RETURN(h5ad::File::Extent e, file.Locate(path));
  LocatedArray a;
  a.path = path;
  bool ok = ParseType(e.dtype, &a.type);
  ok = ok && std::find(allowed.begin(), allowed.end(), a.type) != allowed.end();
  if (!ok)
    return Status::Corrupt("'" + path + "' holds " + e.dtype + " values; a store has " +
                           TypeList(allowed));
  if (e.elements < 0 || (expected >= 0 && e.elements != expected))
    return Status::Corrupt("'" + path + "' has " + std::to_string(e.elements) + " values, " + from +
                           " says " + std::to_string(expected));
  a.elements = e.elements;
  a.in_place = e.in_place && std::endian::native == std::endian::little;
  if (!a.in_place) return a;
  a.offset = e.offset;
  if (e.bytes != a.bytes())
    return Status::Corrupt("'" + path + "' has " + std::to_string(e.bytes) + " bytes for " +
                           std::to_string(e.elements) + " " + e.dtype + " values");
  if (e.offset > file_size || e.bytes > file_size - e.offset)
    return Status::Corrupt("'" + path + "' lies outside the file (bytes " +
                           std::to_string(e.offset) + " to " + std::to_string(e.offset + e.bytes) +
                           " of a " + std::to_string(file_size) + "-byte file)");
  return a;
}

}  // namespace

Result<StoreArrays> LocateStoreArrays(const h5ad::File& file, int format_version, int64_t n_genes,
                                      int64_t n_datasets, bool histograms, uint64_t file_size) {
  const EntryArrayNames names = EntryArraysOf(format_version);
  const bool v1 = format_version == 1;
  const std::vector<ArrayType> ints = {ArrayType::kInt32, ArrayType::kInt64};
  const std::vector<ArrayType> nnz_types =
      v1 ? std::vector<ArrayType>{ArrayType::kUInt32}
         : std::vector<ArrayType>{ArrayType::kUInt16, ArrayType::kUInt32};
  // cellcube writes float64 sums and float32 m2; a tool that re-saved the store with
  // other float widths still reads (format 1's two sums share one type).
  const std::vector<ArrayType> floats = {ArrayType::kFloat32, ArrayType::kFloat64};
  // The entries are the indices' (indptr must end there: checked with indptr as a whole,
  // StoreReader and StoreFileSource alike, without reading it through HDF5 here).
  const char* by_indptr = "layers/nnz/indices";
  StoreArrays a;
  CC_ASSIGN_OR_RETURN(a.indptr, Locate(file, names.indptr, ints, n_genes + 1,
                                       "the number of genes + 1", file_size));
  CC_ASSIGN_OR_RETURN(a.indices,
                      Locate(file, names.indices, {a.indptr.type}, -1, by_indptr, file_size));
  a.n_entries = a.indices.elements;
  CC_ASSIGN_OR_RETURN(a.nnz, Locate(file, names.nnz, nnz_types, a.n_entries, by_indptr, file_size));
  CC_ASSIGN_OR_RETURN(a.sum, Locate(file, names.sum, floats, a.n_entries, by_indptr, file_size));
  CC_ASSIGN_OR_RETURN(a.second,
                      Locate(file, names.second, v1 ? std::vector<ArrayType>{a.sum.type} : floats,
                             a.n_entries, by_indptr, file_size));
  // A format-3 store re-saved by anndata has lost raw.cellcube (read_h5ad skips it): it
  // reads as format 2 does, without offsets or histograms (docs/FORMAT.md).
  if (format_version < 3 || !file.Exists(store_layout::kRawGroup)) return a;
  const int64_t pairs = n_genes * n_datasets;
  const char* by_pairs = "the genes times the datasets";
  const std::vector<ArrayType> u32 = {ArrayType::kUInt32};
  CC_ASSIGN_OR_RETURN(a.entry_offsets,
                      Locate(file, store_layout::kEntryOffsets, u32, pairs, by_pairs, file_size));
  if (!histograms) return a;
  CC_ASSIGN_OR_RETURN(a.hist_indptr, Locate(file, store_layout::kHistIndptr, {ArrayType::kInt64},
                                            n_genes + 1, "the number of genes + 1", file_size));
  CC_ASSIGN_OR_RETURN(a.hist_data, Locate(file, store_layout::kHistData, {ArrayType::kUInt8}, -1,
                                          "hist_indptr", file_size));
  CC_ASSIGN_OR_RETURN(a.hist_offsets,
                      Locate(file, store_layout::kHistOffsets, u32, pairs, by_pairs, file_size));
  return a;
}

Result<LocatedArray> LocateLike(const h5ad::File& file, const std::string& path,
                                const LocatedArray& like, uint64_t file_size) {
  return Locate(file, path, {like.type}, like.elements, "the nnz layer", file_size);
}

namespace {

template <typename Out, typename In>
void CopyAs(const std::vector<In>& values, uint64_t* dst) {
  auto* out = reinterpret_cast<Out*>(dst);
  for (size_t i = 0; i < values.size(); ++i) out[i] = static_cast<Out>(values[i]);
}

}  // namespace

Result<std::vector<uint64_t>> ReadWhole(const h5ad::File& file, const LocatedArray& array) {
  std::vector<uint64_t> words((array.bytes() + 7) / 8);
  const bool real = array.type == ArrayType::kFloat32 || array.type == ArrayType::kFloat64;
  if (real) {
    CC_ASSIGN_OR_RETURN(auto values, file.ReadDoubles(array.path));
    if (static_cast<int64_t>(values.size()) != array.elements)
      return Status::Corrupt("'" + array.path + "' could not be read whole");
    if (array.type == ArrayType::kFloat64)
      CopyAs<double>(values, words.data());
    else
      CopyAs<float>(values, words.data());
    return words;
  }
  CC_ASSIGN_OR_RETURN(auto values, file.ReadIntegers(array.path));
  if (static_cast<int64_t>(values.size()) != array.elements)
    return Status::Corrupt("'" + array.path + "' could not be read whole");
  switch (array.type) {
    case ArrayType::kInt64:
      CopyAs<int64_t>(values, words.data());
      break;
    case ArrayType::kInt32:
      CopyAs<int32_t>(values, words.data());
      break;
    case ArrayType::kUInt16:
      CopyAs<uint16_t>(values, words.data());
      break;
    case ArrayType::kUInt8:
      CopyAs<uint8_t>(values, words.data());
      break;
    default:
      CopyAs<uint32_t>(values, words.data());
  }
  return words;
}

}  // namespace cellcube
