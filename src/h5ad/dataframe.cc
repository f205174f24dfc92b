#include "h5ad/dataframe.h"

#include <cmath>
#include <cstring>
#include <unordered_map>

#include "util/text.h"

namespace cellcube::h5ad {
namespace {

// A column's values as read, before labelling.
struct RawValues {
  enum class Type { kStrings, kInts, kFloats, kBools } type = Type::kStrings;
  std::vector<std::string> strings;
  std::vector<int64_t> ints;  // also booleans (0/1)
  std::vector<double> floats;
  bool single_precision = false;  // float32 on disk: labelled with float32's shortest digits
  std::vector<uint8_t> missing;   // 1 = missing; empty = none missing

  size_t size() const {
    switch (type) {
      case Type::kStrings:
        return strings.size();
      case Type::kFloats:
        return floats.size();
      default:
        return ints.size();
    }
  }
  bool IsMissing(size_t i) const {
    if (!missing.empty() && missing[i]) return true;
    return type == Type::kFloats && std::isnan(floats[i]);
  }
  std::string Label(size_t i) const {
    switch (type) {
      case Type::kStrings:
        return strings[i];
      case Type::kInts:
        return std::to_string(ints[i]);
      case Type::kBools:
        return ints[i] ? "True" : "False";
      case Type::kFloats:
        return single_precision ? FormatPythonFloat32(static_cast<float>(floats[i]))
                                : FormatPythonFloat(floats[i]);
    }
    return {};
  }
};

Result<RawValues> ReadValues(hid_t dataset) {
  Handle type(H5Dget_type(dataset));
  RawValues out;
  switch (ClassifyType(type.get())) {
    case TypeClass::kString: {
      out.type = RawValues::Type::kStrings;
      CC_ASSIGN_OR_RETURN(out.strings, ReadStringDataset(dataset));
      return out;
    }
    case TypeClass::kInteger:
    case TypeClass::kUnsigned:
    case TypeClass::kBool: {
      out.type = ClassifyType(type.get()) == TypeClass::kBool ? RawValues::Type::kBools
                                                              : RawValues::Type::kInts;
      CC_ASSIGN_OR_RETURN(out.ints, ReadInt64Dataset(dataset));
      return out;
    }
    case TypeClass::kFloat: {
      out.type = RawValues::Type::kFloats;
      out.single_precision = H5Tget_size(type.get()) <= 4;
      CC_ASSIGN_OR_RETURN(out.floats, ReadDoubleDataset(dataset));
      return out;
    }
    default:
      return Status::Unsupported("values of type " + TypeName(type.get()));
  }
}

Result<RawValues> ReadCompoundField(hid_t dataset, const std::string& field) {
  Handle type(H5Dget_type(dataset));
  int idx = H5Tget_member_index(type.get(), field.c_str());
  if (idx < 0) return Status::NotFound("no field '" + field + "'");
  Handle member(H5Tget_member_type(type.get(), static_cast<unsigned>(idx)));
  RawValues out;
  TypeClass cls = ClassifyType(member.get());
  if (cls == TypeClass::kString) {
    out.type = RawValues::Type::kStrings;
    CC_ASSIGN_OR_RETURN(out.strings, ReadCompoundStrings(dataset, field));
  } else if (cls == TypeClass::kInteger || cls == TypeClass::kUnsigned || cls == TypeClass::kBool) {
    out.type = cls == TypeClass::kBool ? RawValues::Type::kBools : RawValues::Type::kInts;
    CC_ASSIGN_OR_RETURN(out.ints, ReadCompoundInt64(dataset, field));
  } else if (cls == TypeClass::kFloat) {
    out.type = RawValues::Type::kFloats;
    out.single_precision = H5Tget_size(member.get()) <= 4;
    CC_ASSIGN_OR_RETURN(out.floats, ReadCompoundDoubles(dataset, field));
  } else {
    return Status::Unsupported("field of type " + TypeName(member.get()));
  }
  return out;
}

ColumnKind KindOf(const RawValues& v) {
  switch (v.type) {
    case RawValues::Type::kStrings:
      return ColumnKind::kString;
    case RawValues::Type::kInts:
      return ColumnKind::kInteger;
    case RawValues::Type::kBools:
      return ColumnKind::kBoolean;
    case RawValues::Type::kFloats:
      return ColumnKind::kFloat;
  }
  return ColumnKind::kString;
}

// Labels each row, numbering distinct labels in order of first appearance.
Column Factorize(std::string name, ColumnKind kind, const RawValues& v) {
  Column col;
  col.name = std::move(name);
  col.kind = kind;
  col.codes.resize(v.size());
  std::unordered_map<std::string, int32_t> seen;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v.IsMissing(i)) {
      col.codes[i] = Column::kMissing;
      continue;
    }
    auto [it, inserted] = seen.emplace(v.Label(i), static_cast<int32_t>(col.labels.size()));
    if (inserted) col.labels.push_back(it->first);
    col.codes[i] = it->second;
  }
  return col;
}

Result<Column> MakeCategorical(std::string name, const RawValues& categories,
                               const RawValues& codes, bool ordered) {
  if (codes.type != RawValues::Type::kInts)
    return Status::Corrupt("categorical column '" + name + "' has non-integer codes");
  Column col;
  col.name = std::move(name);
  col.kind = ColumnKind::kCategorical;
  col.ordered = ordered;
  for (size_t i = 0; i < categories.size(); ++i) col.labels.push_back(categories.Label(i));
  const auto n_cat = static_cast<int64_t>(col.labels.size());
  col.codes.resize(codes.ints.size());
  for (size_t i = 0; i < codes.ints.size(); ++i) {
    int64_t c = codes.ints[i];
    if (c < -1 || c >= n_cat)
      return Status::Corrupt("categorical column '" + col.name + "' has code " + std::to_string(c) +
                             " at row " + std::to_string(i) + " but only " + std::to_string(n_cat) +
                             " categories");
    col.codes[i] = static_cast<int32_t>(c);
  }
  return col;
}

Status CheckLength(const std::string& what, size_t got, int64_t want) {
  if (static_cast<int64_t>(got) != want)
    return Status::Corrupt(what + " has " + std::to_string(got) + " values but the dataframe has " +
                           std::to_string(want) + " rows");
  return Status::Ok();
}

// anndata >= 0.8 encoded groups: categorical, nullable-*.
Result<Column> ReadEncodedGroup(hid_t group, const std::string& name) {
  std::string enc = ReadStringAttr(group, "encoding-type").value_or("");
  if (enc == "categorical") {
    CC_ASSIGN_OR_RETURN(Handle cats_ds, OpenDataset(group, "categories"));
    CC_ASSIGN_OR_RETURN(Handle codes_ds, OpenDataset(group, "codes"));
    CC_ASSIGN_OR_RETURN(RawValues cats, ReadValues(cats_ds.get()));
    CC_ASSIGN_OR_RETURN(RawValues codes, ReadValues(codes_ds.get()));
    return MakeCategorical(name, cats, codes, ReadBoolAttr(group, "ordered").value_or(false));
  }
  if (enc == "nullable-integer" || enc == "nullable-boolean" || enc == "nullable-string-array") {
    CC_ASSIGN_OR_RETURN(Handle values_ds, OpenDataset(group, "values"));
    CC_ASSIGN_OR_RETURN(RawValues values, ReadValues(values_ds.get()));
    if (GetNodeKind(group, "mask") == NodeKind::kDataset) {
      CC_ASSIGN_OR_RETURN(Handle mask_ds, OpenDataset(group, "mask"));
      CC_ASSIGN_OR_RETURN(auto mask, ReadInt64Dataset(mask_ds.get()));
      if (mask.size() != values.size())
        return Status::Corrupt("column '" + name + "': mask and values differ in length");
      values.missing.assign(mask.begin(), mask.end());
    }
    ColumnKind kind = enc == "nullable-integer"   ? ColumnKind::kNullableInteger
                      : enc == "nullable-boolean" ? ColumnKind::kNullableBoolean
                                                  : ColumnKind::kString;
    if (kind == ColumnKind::kNullableBoolean) values.type = RawValues::Type::kBools;
    return Factorize(name, kind, values);
  }
  return Status::Unsupported("column '" + name + "' has unknown encoding-type '" + enc + "'");
}

// A column stored as one dataset: plain values, or 0.7 codes with a reference to
// their categories.
Result<Column> ReadColumnDataset(hid_t dataset, const std::string& name) {
  CC_ASSIGN_OR_RETURN(RawValues values, ReadValues(dataset));
  if (HasAttr(dataset, "categories")) {
    Handle attr(H5Aopen(dataset, "categories", H5P_DEFAULT));
    Handle type(H5Aget_type(attr.get()));
    if (ClassifyType(type.get()) == TypeClass::kReference) {
      hobj_ref_t ref{};
      if (H5Aread(attr.get(), H5T_STD_REF_OBJ, &ref) < 0)
        return Status::Corrupt("column '" + name + "': unreadable categories reference");
      Handle cats_ds(H5Rdereference2(dataset, H5P_DEFAULT, H5R_OBJECT, &ref));
      if (!cats_ds.valid() || H5Iget_type(cats_ds.get()) != H5I_DATASET)
        return Status::Corrupt("column '" + name + "': categories reference points nowhere");
      CC_ASSIGN_OR_RETURN(RawValues cats, ReadValues(cats_ds.get()));
      // 0.7 keeps the ordered flag on the categories dataset.
      bool ordered = ReadBoolAttr(cats_ds.get(), "ordered")
                         .value_or(ReadBoolAttr(dataset, "ordered").value_or(false));
      return MakeCategorical(name, cats, values, ordered);
    }
  }
  return Factorize(name, KindOf(values), values);
}

bool IsCompound(hid_t file, const std::string& path) {
  return GetNodeKind(file, path) == NodeKind::kDataset;
}

}  // namespace

Result<DataFrameInfo> ReadDataFrameInfo(hid_t file, const std::string& path) {
  DataFrameInfo info;
  info.group = path;
  NodeKind kind = GetNodeKind(file, path);
  if (kind == NodeKind::kDataset) {
    CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(file, path));
    Handle type(H5Dget_type(ds.get()));
    if (H5Tget_class(type.get()) != H5T_COMPOUND)
      return Status::Corrupt("'" + path + "' is a dataset but not a compound table");
    info.index_name = "index";
    int n = H5Tget_nmembers(type.get());
    bool has_index = false;
    for (int i = 0; i < n; ++i) {
      char* field = H5Tget_member_name(type.get(), static_cast<unsigned>(i));
      std::string f = field ? field : "";
      H5free_memory(field);
      if (f == "index") {
        has_index = true;
      } else {
        info.column_names.push_back(f);
      }
    }
    if (!has_index) return Status::Corrupt("'" + path + "' has no 'index' field");
    info.n_rows = DatasetSize(ds.get());
    return info;
  }
  if (kind != NodeKind::kGroup) return Status::NotFound("no '" + path + "' dataframe");
  CC_ASSIGN_OR_RETURN(Handle group, OpenGroup(file, path));
  info.index_name = ReadStringAttr(group.get(), "_index").value_or("_index");
  if (GetNodeKind(group.get(), info.index_name) == NodeKind::kMissing)
    return Status::Corrupt("'" + path + "' has no index dataset '" + info.index_name + "'");
  if (HasAttr(group.get(), "column-order")) {
    info.column_names = ReadStringListAttr(group.get(), "column-order");
  } else {
    for (auto& name : ListGroup(group.get()))
      if (name != info.index_name && name != "__categories") info.column_names.push_back(name);
  }
  for (const auto& name : info.column_names)
    if (GetNodeKind(group.get(), name) == NodeKind::kMissing)
      // Zeroed or overwritten bytes in a group's index make its members vanish: name the
      // object that cannot be read, and how to look.
      return Status::Corrupt("the file looks damaged: '" + path + "' lists column '" + name +
                             "', but the object '" + path + "/" + name +
                             "' cannot be read (overwritten or zeroed bytes?); 'h5dump -n' on "
                             "the file lists what HDF5 can still find");
  CC_ASSIGN_OR_RETURN(Handle index, OpenDataset(group.get(), info.index_name));
  info.n_rows = DatasetSize(index.get());
  return info;
}

Result<std::vector<std::string>> ReadDataFrameIndex(hid_t file, const DataFrameInfo& info) {
  RawValues values;
  if (IsCompound(file, info.group)) {
    CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(file, info.group));
    CC_ASSIGN_OR_RETURN(values, ReadCompoundField(ds.get(), info.index_name));
  } else {
    CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(file, info.group + "/" + info.index_name));
    CC_ASSIGN_OR_RETURN(values, ReadValues(ds.get()));
  }
  if (values.type == RawValues::Type::kStrings) return std::move(values.strings);
  std::vector<std::string> out;
  out.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) out.push_back(values.Label(i));
  return out;
}

Result<Column> ReadDataFrameColumn(hid_t file, const DataFrameInfo& info, const std::string& name) {
  bool known = false;
  for (const auto& c : info.column_names) known |= c == name;
  if (!known)
    return Status::NotFound("no column '" + name + "' in " + info.group +
                            SuggestionSuffix(name, info.column_names));
  Result<Column> col = Status::Internal("unread");
  if (IsCompound(file, info.group)) {
    CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(file, info.group));
    CC_ASSIGN_OR_RETURN(RawValues values, ReadCompoundField(ds.get(), name));
    std::string cats_path = "uns/" + name + "_categories";
    if (GetNodeKind(file, cats_path) == NodeKind::kDataset) {
      CC_ASSIGN_OR_RETURN(Handle cats_ds, OpenDataset(file, cats_path));
      CC_ASSIGN_OR_RETURN(RawValues cats, ReadValues(cats_ds.get()));
      col = MakeCategorical(name, cats, values, false);
    } else {
      col = Factorize(name, KindOf(values), values);
    }
  } else {
    std::string path = info.group + "/" + name;
    if (GetNodeKind(file, path) == NodeKind::kGroup) {
      CC_ASSIGN_OR_RETURN(Handle g, OpenGroup(file, path));
      col = ReadEncodedGroup(g.get(), name);
    } else {
      CC_ASSIGN_OR_RETURN(Handle ds, OpenDataset(file, path));
      col = ReadColumnDataset(ds.get(), name);
    }
  }
  if (!col.ok()) return col.status().WithContext(info.group);
  CC_RETURN_IF_ERROR(
      CheckLength(info.group + " column '" + name + "'", col->codes.size(), info.n_rows));
  return col;
}

}  // namespace cellcube::h5ad
