// Differential expression and marker genes (docs/DE.md): which genes differ between two
// sides of a population, tested per cell (Welch's t) or per donor (pseudobulk: paired
// or Welch on the donors' means), from the store's statistics alone.
//
// Thread safety: the functions only read the engine; call them from any thread.
// Errors: one line; NotFound for an unknown column or value (with suggestions),
// InvalidArgument for a malformed comparison (a value on both sides, `rest` mixed with
// values, a side without cells, `--test donors` without 2 donors a side).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cellcube/query.h"
#include "cellcube/status.h"

namespace cellcube {

// How error messages name the options: as the command line spells them (--min-cells)
// or as the HTTP API's parameters and the Python module's arguments do (min_cells).
enum class OptionNames { kFlags, kParameters };

// How a comparison picks and runs its test: what DE and markers share.
struct DeTest {
  std::string test = "auto";  // auto | donors | cells | wilcoxon (auto never picks it)
  std::string donor;          // the donor column; "" = donor, donor_id, individual, ...
  int64_t min_cells = 10;     // a donor is kept on a side with this many cells there
  OptionNames names = OptionNames::kFlags;  // in errors: --min-cells or min_cells
};

struct DeOptions {
  std::string compare;              // the column that splits the sides
  std::vector<std::string> group1;  // its values on side 1 (literal; "NA" = missing)
  std::vector<std::string> group2;  // side 2's values; empty or {"rest"} = the rest
  Population population;            // the cells compared, as in Query
  DeTest testing;
  double min_frac = 0;             // output filter (docs/DE.md), from 0 to 1
  std::string direction = "both";  // up | down | both
  int64_t top = -1;                // -1 = every row
};

// One tested gene. NaN marks an empty value; n_donors are -1 under the cells test.
struct DeRow {
  int32_t gene = 0;  // store gene index
  int64_t n_cells1 = 0, n_cells2 = 0;
  int64_t n_donors1 = -1, n_donors2 = -1;
  double mean1 = 0, mean2 = 0, frac1 = 0, frac2 = 0, logfc = 0;
  double effect = 0, t = 0, df = 0, pvalue = 0, padj = 0;
};

struct DeResult {
  std::string test;  // "cells", "donors-paired", "donors-unpaired" or "wilcoxon"
  std::vector<std::string> notes;
  std::vector<std::string> gene_ids, symbols;  // per store gene index used by rows
  std::vector<DeRow> rows;                     // in docs/DE.md's order, filtered
};

// A store's donor column by docs/DE.md's names: the first of donor, donor_id, individual,
// patient, subject among its columns; "" when none. (DeOptions::donor overrides it.)
std::string DefaultDonorColumn(const StoreData& meta);

// The output columns of `de` (docs/DE.md), in order.
const std::vector<std::string>& DeColumnNames();

Result<DeResult> RunDe(const QueryEngine& engine, const DeOptions& options);

// Marker genes (docs/DE.md): for each value of `column` present in the population (NA
// excepted), in label order, `de --compare column --group1 VALUE --group2 rest`; of its
// genes that pass `de`'s filter for `direction` and `min_frac` (up: logfc > 0) with padj <=
// max_padj, the top N by logfc (down: the most negative; both: |logfc|), then effect in
// the same direction, then the store's gene order.
struct MarkersOptions {
  std::string column = "cell_type";
  Population population;
  DeTest testing;
  int64_t top = 10;
  double max_padj = 0.05;
  std::string direction = "up";  // up | down | both, as DeOptions::direction
  double min_frac = 0;           // as DeOptions::min_frac, from 0 to 1
};

struct MarkersResult {
  std::string column;
  std::vector<std::string> values;  // per row: the value it is a marker of
  // Per row, when an ontology backs `column`: its value's term id ("" for a plain value);
  // else empty (docs/ONTOLOGY.md: JSON carries it beside the label).
  std::vector<std::string> term_ids;
  DeResult de;  // rows of every value; each note once, led by the values it holds for
};

Result<MarkersResult> RunMarkers(const QueryEngine& engine, const MarkersOptions& options);

// Benjamini–Hochberg adjusted p-values of `p` (NaN stays NaN and is not counted).
std::vector<double> BenjaminiHochberg(const std::vector<double>& p);

}  // namespace cellcube
