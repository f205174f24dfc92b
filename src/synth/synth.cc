#include "synth/synth.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "synth/catalog.h"
#include "synth/fastmath.h"
#include "synth/rng.h"

namespace cellcube::synth {
namespace {

// Labels of the independent random streams (SubSeed's first label).
enum Tag : uint64_t {
  kTagUniverse = 1,
  kTagDataset,
  kTagTissueOrder,
  kTagTypeNoise,
  kTagMarker,
  kTagDiseaseGene,
  kTagBatch,
  kTagTypeRna,
  kTagCalibration,
  kTagCells,
  kTagBarcodes,
};

// obs columns, in order.
enum ObsColumn { kCellType, kTissue, kDisease, kStage, kSex, kDonor, kNumObs };

enum class GeneGroup : uint8_t {
  kSynthetic,
  kHousekeeping,
  kMarker,
  kFemale,
  kMale,
  kInterferon,
  kTumour
};

// A gene of the universe every dataset of a run draws its genes from.
struct UniverseGene {
  std::string id;
  std::string symbol;
  std::string biotype;
  GeneGroup group = GeneGroup::kSynthetic;
  double base = 0;     // log expression level, relative to a typical gene
  double r = 4;        // negative binomial size (smaller = more overdispersed)
  double disease = 0;  // log fold change in donors with the disease
};

constexpr double kLibrarySd = 0.45;  // log-normal spread of library sizes between cells
constexpr double kTypeNoiseSd = 0.35;
constexpr double kBatchSd = 0.2;
constexpr int kLastBucket = 40;
constexpr int kStages = 4;

// Joins strings with +=: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
template <typename... Parts>
std::string Concat(const Parts&... parts) {
  std::string s;
  (s += ... += parts);
  return s;
}

std::string ZeroPad(int64_t v, int width) {
  std::string s = std::to_string(v);
  if (static_cast<int>(s.size()) < width) s.insert(0, static_cast<size_t>(width) - s.size(), '0');
  return s;
}

std::vector<UniverseGene> MakeUniverse(const Options& o) {
  Rng rng(SubSeed(o.seed, kTagUniverse, static_cast<uint64_t>(o.genes)));
  const auto& known = KnownSymbols();
  std::unordered_map<std::string, GeneGroup> groups;
  auto mark = [&](const std::vector<const char*>& genes, GeneGroup g) {
    for (const char* s : genes) groups.emplace(s, g);
  };
  mark(HousekeepingGenes(), GeneGroup::kHousekeeping);
  mark(FemaleGenes(), GeneGroup::kFemale);
  mark(MaleGenes(), GeneGroup::kMale);
  mark(InterferonGenes(), GeneGroup::kInterferon);
  mark(TumourGenes(), GeneGroup::kTumour);
  for (const auto& t : CellTypes()) mark(t.markers, GeneGroup::kMarker);

  // A tenth more genes than a dataset holds: datasets differ in their synthetic genes.
  const int64_t n = o.genes + std::max<int64_t>(1, o.genes / 10);
  std::vector<int64_t> slots(static_cast<size_t>(n));
  std::iota(slots.begin(), slots.end(), 0);
  std::vector<int32_t> known_at(static_cast<size_t>(n), -1);
  for (size_t k = 0; k < known.size(); ++k) {
    auto pick = k + rng.Below(static_cast<uint64_t>(n) - k);
    std::swap(slots[k], slots[pick]);
    known_at[static_cast<size_t>(slots[k])] = static_cast<int32_t>(k);
  }
  const int width = std::max(4, static_cast<int>(std::to_string(n).size()));
  std::unordered_set<uint64_t> used_ids;
  std::vector<UniverseGene> out(static_cast<size_t>(n));
  int64_t synthetic = 0;
  for (int64_t j = 0; j < n; ++j) {
    UniverseGene& g = out[static_cast<size_t>(j)];
    uint64_t id = 0;
    do id = 100000 + rng.Below(900000);
    while (!used_ids.insert(id).second);
    g.id = Concat("ENSG00000", std::to_string(id));
    int32_t k = known_at[static_cast<size_t>(j)];
    if (k >= 0) {
      g.symbol = known[static_cast<size_t>(k)];
      g.group = groups.at(g.symbol);
      g.biotype = IsLncRna(g.symbol) ? "lncRNA" : "protein_coding";
    } else {
      g.symbol = Concat("GENE", ZeroPad(++synthetic, width));
      double u = rng.Uniform();
      g.biotype = u < 0.75 ? "protein_coding" : u < 0.93 ? "lncRNA" : "processed_pseudogene";
    }
    g.r = std::exp(rng.Normal(std::log(4.0), 0.5));  // quantised to a level below
    switch (g.group) {
      case GeneGroup::kSynthetic:
        g.base = rng.Normal(-0.3, 1.4);
        if (g.biotype != "protein_coding") g.base -= 0.8;
        if (rng.Uniform() < 0.04) g.disease = rng.Normal(0, 1.0);
        break;
      case GeneGroup::kHousekeeping:
        g.base = rng.Normal(4.2, 0.6);
        g.r = 30;  // close to Poisson
        break;
      case GeneGroup::kMarker:
        g.base = rng.Normal(-2.5, 0.6);
        break;
      case GeneGroup::kFemale:
        g.base = rng.Normal(3.0, 0.3);
        break;
      case GeneGroup::kMale:
        g.base = rng.Normal(1.8, 0.4);
        break;
      case GeneGroup::kInterferon:
      case GeneGroup::kTumour:
        g.base = rng.Normal(-1.5, 0.5);
        break;
    }
  }
  return out;
}

// Genes of one expression profile grouped by rate: bucket b holds the genes whose rate
// lies within a factor 2^-b .. 2^-(b+1) of the profile's highest (the last bucket takes
// everything lower), so a cell can skip through a bucket with one geometric jump per
// candidate gene instead of one random draw per gene.
struct Profile {
  std::vector<float> pi;      // relative expression rate per gene (0: never sampled)
  std::vector<float> log2pi;  // log2 of pi
  struct Bucket {
    double pimax;  // highest rate in the bucket
    uint32_t begin, end;
  };
  std::vector<uint32_t> order;  // gene indices, bucket by bucket, increasing within one
  std::vector<Bucket> buckets;
};

Profile MakeProfile(std::vector<float> pi) {
  Profile p;
  p.pi = std::move(pi);
  const auto n = static_cast<uint32_t>(p.pi.size());
  p.log2pi.resize(n);
  for (uint32_t g = 0; g < n; ++g)
    p.log2pi[g] =
        p.pi[g] > 0 ? static_cast<float>(std::log2(static_cast<double>(p.pi[g]))) : -1e30f;
  float top = 0;
  for (float v : p.pi) top = std::max(top, v);
  if (top <= 0) return p;
  std::vector<int> bucket(n, -1);
  std::vector<uint32_t> size(kLastBucket + 1, 0);
  for (uint32_t g = 0; g < n; ++g) {
    if (p.pi[g] <= 0) continue;
    int b = static_cast<int>(std::floor(std::log2(static_cast<double>(top) / p.pi[g])));
    bucket[g] = std::clamp(b, 0, kLastBucket);
    ++size[static_cast<size_t>(bucket[g])];
  }
  std::vector<uint32_t> start(kLastBucket + 2, 0);
  for (int b = 0; b <= kLastBucket; ++b) start[b + 1] = start[b] + size[b];
  p.order.resize(start.back());
  std::vector<uint32_t> fill(start.begin(), start.end() - 1);
  std::vector<double> pimax(kLastBucket + 1, 0);
  for (uint32_t g = 0; g < n; ++g) {
    if (bucket[g] < 0) continue;
    auto b = static_cast<size_t>(bucket[g]);
    p.order[fill[b]++] = g;
    pimax[b] = std::max(pimax[b], static_cast<double>(p.pi[g]));
  }
  for (int b = 0; b <= kLastBucket; ++b)
    if (size[b] > 0) p.buckets.push_back({pimax[b], start[b], start[b + 1]});
  return p;
}

// 1 - e^x for x <= 0, accurate near 0: P(count > 0) from log P(0) = -r log(1 + lam / r)
// (negative binomial of mean lam and size r).
inline double OneMinusExp(double x) {
  if (x > -1e-3) return -x * (1 + x * (0.5 + x * (1.0 / 6)));
  return 1 - FastExp(x);
}

// Dispersion levels: every gene's negative binomial size is r = 2^(k/2) for a level k
// in 0..kLevels-1 (r from 1 to 45), so that P(count > 0) can be tabulated.
constexpr int kLevels = 12;
struct Levels {
  double size[kLevels];
  double inverse[kLevels];
  Levels() {
    for (int k = 0; k < kLevels; ++k) {
      size[k] = std::exp2(k / 2.0);
      inverse[k] = 1 / size[k];
    }
  }
};
const Levels kLevelTable;
inline uint8_t LevelOf(double r) {
  return static_cast<uint8_t>(
      std::clamp(static_cast<int>(std::lround(2 * std::log2(r))), 0, kLevels - 1));
}

// P(count > 0) and P(count = 1 | count > 0) of a negative binomial.
struct ZeroOne {
  double pnz;
  double one;
};
ZeroOne ExactZeroOne(double lam, int level) {
  const double r = kLevelTable.size[level];
  const double log_p0 = -r * FastLog1p(lam * kLevelTable.inverse[level]);
  const double p0 = FastExp(log_p0);
  const double pnz = log_p0 > -1e-3 ? OneMinusExp(log_p0) : 1 - p0;
  // P(1) = p0 r lam / (r + lam); as lam -> 0, P(1) / pnz -> 1.
  const double one = pnz > 0 ? p0 * r * lam / (r + lam) / pnz : 1.0;
  return {pnz, std::min(one, 1.0)};
}

// ZeroOne per dispersion level over log2(mean), interpolated linearly between 8
// points per octave (relative error < 1e-3): deciding whether a candidate gene is
// expressed, and in most cases its count (1), costs a few table reads (31 KB: it stays
// in the L1 cache) instead of a log1p and an exp.
class ZeroOneTable {
 public:
  static const ZeroOneTable& Get() {
    static const ZeroOneTable table;
    return table;
  }
  ZeroOne Lookup(int level, double log2_lam) const {
    const double x = (log2_lam - kMinLog2) * kPerOctave;
    if (!(x > 0) || x >= kSize - 1) return ExactZeroOne(std::exp2(log2_lam), level);  // rare
    const auto i = static_cast<int64_t>(x);
    const double f = x - static_cast<double>(i);
    const float* t = &table_[2 * (static_cast<size_t>(level) * kSize + static_cast<size_t>(i))];
    return {t[0] + f * (t[2] - t[0]), t[1] + f * (t[3] - t[1])};
  }

 private:
  static constexpr int kMinLog2 = -30;  // means from 1e-9 ...
  static constexpr int kMaxLog2 = 10;   // ... to 1024
  static constexpr int kPerOctave = 8;
  static constexpr size_t kSize = (kMaxLog2 - kMinLog2) * kPerOctave + 1;

  ZeroOneTable() : table_(2 * kLevels * kSize) {
    for (int k = 0; k < kLevels; ++k)
      for (size_t i = 0; i < kSize; ++i) {
        ZeroOne z = ExactZeroOne(std::exp2(kMinLog2 + static_cast<double>(i) / kPerOctave), k);
        table_[2 * (static_cast<size_t>(k) * kSize + i)] = static_cast<float>(z.pnz);
        table_[2 * (static_cast<size_t>(k) * kSize + i) + 1] = static_cast<float>(z.one);
      }
  }
  std::vector<float> table_;  // (pnz, one) pairs
};

// A negative binomial count conditioned on being >= 2.
uint32_t SampleCountAboveOne(double lam, int level, Rng& rng) {
  const double r = kLevelTable.size[level];
  if (lam > 500) {
    // Far from zero: a log-normal with the negative binomial's mean and variance.
    double var = lam + lam * lam / r;
    double s2 = std::log1p(var / (lam * lam));
    double k = std::round(std::exp(std::log(lam) - s2 / 2 + std::sqrt(s2) * rng.Normal()));
    return static_cast<uint32_t>(std::clamp(k, 2.0, 1e7));
  }
  // Inverse CDF from 2 upwards: P(1) = P(0) r m, P(k+1) = P(k) (k + r) / (k + 1) m.
  const double m = lam / (r + lam);
  const double log_p0 = -r * FastLog1p(lam * kLevelTable.inverse[level]);
  const double p0 = FastExp(log_p0);
  const double pnz = log_p0 > -1e-3 ? OneMinusExp(log_p0) : 1 - p0;
  double pk = p0 * r * m;  // P(1)
  const double u = rng.Uniform() * (pnz - pk);
  pk *= (1 + r) * m / 2;  // P(2)
  double cum = pk;
  uint32_t k = 2;
  // The cap only guards against rounding: P(k) is negligible long before it.
  const double cap = 20 * (lam + 10);
  while (cum < u && k < cap) {
    pk *= (k + r) * m / (k + 1);
    ++k;
    cum += pk;
  }
  return k;
}

// Scratch space of one generating thread.
struct Workspace {
  std::vector<uint64_t> bits;    // genes expressed by the current cell
  std::vector<uint32_t> counts;  // their counts (valid where the bit is set)
};

// Largest-remainder split of `total` in proportion to `weights`.
std::vector<int64_t> Apportion(int64_t total, const std::vector<double>& weights) {
  double sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::vector<int64_t> out(weights.size(), 0);
  if (sum <= 0 || weights.empty()) return out;
  std::vector<std::pair<double, size_t>> rest;
  int64_t given = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    double exact = static_cast<double>(total) * weights[i] / sum;
    out[i] = static_cast<int64_t>(std::floor(exact));
    given += out[i];
    rest.emplace_back(exact - std::floor(exact), i);
  }
  std::sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (size_t i = 0; given < total; i = (i + 1) % rest.size(), ++given) ++out[rest[i].second];
  return out;
}

size_t PickWeighted(const std::vector<double>& cumulative, Rng& rng) {
  double u = rng.Uniform() * cumulative.back();
  auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u);
  return std::min(static_cast<size_t>(it - cumulative.begin()), cumulative.size() - 1);
}

}  // namespace

struct Dataset::Model {
  std::string name;
  std::string title;
  int64_t n_cells = 0;
  int64_t n_genes = 0;
  double target_density = 0.1;
  double scale = 1;  // library size scale, calibrated to the target density
  uint64_t cell_seed = 0;
  uint64_t barcode_seed = 0;
  std::vector<Categorical> obs;
  std::vector<std::string> ids, symbols, biotypes;
  std::vector<uint8_t> level;     // per gene: dispersion level
  std::vector<Profile> profiles;  // [cell type code * 2 + diseased]
  std::vector<double> type_rna;   // per cell type code
  int64_t n_tissues = 0;
  std::vector<double> sample_size;      // [donor * n_tissues + tissue]
  std::vector<int32_t> sample_number;   // [donor * n_tissues + tissue]: barcode suffix
  std::vector<uint8_t> donor_diseased;  // per donor code
  std::vector<uint8_t> donor_female;    // per donor code
  std::vector<std::pair<uint32_t, float>> female_genes, male_genes;  // (gene, rate)

  // The cell's profile, library size and sex-specific genes.
  struct CellSetup {
    const Profile* profile;
    double library;
    const std::vector<std::pair<uint32_t, float>>* sex_genes;
  };
  CellSetup Setup(int64_t cell, Rng& rng) const {
    auto c = static_cast<size_t>(cell);
    auto type = static_cast<size_t>(obs[kCellType].codes[c]);
    auto donor = static_cast<size_t>(obs[kDonor].codes[c]);
    auto tissue = static_cast<size_t>(obs[kTissue].codes[c]);
    CellSetup s;
    s.profile = &profiles[type * 2 + donor_diseased[donor]];
    s.library = scale * type_rna[type] *
                sample_size[donor * static_cast<size_t>(n_tissues) + tissue] *
                rng.LogNormal(kLibrarySd);
    s.sex_genes = donor_female[donor] ? &female_genes : &male_genes;
    return s;
  }

  void Cell(int64_t cell, Workspace& ws, CsrRows* out) const;
  double ExpectedDensity(double s_scale,
                         const std::vector<std::pair<const Profile*, double>>& cells,
                         const std::vector<uint32_t>& genes) const;
};

void Dataset::Model::Cell(int64_t cell, Workspace& ws, CsrRows* out) const {
  Rng rng(SubSeed(cell_seed, static_cast<uint64_t>(cell)));
  CellSetup setup = Setup(cell, rng);
  const Profile& p = *setup.profile;
  const double s = setup.library;
  const double log2s = std::log2(s);
  uint64_t* bits = ws.bits.data();
  uint32_t* counts = ws.counts.data();
  const ZeroOneTable& table = ZeroOneTable::Get();
  // Keeps gene g with probability P(count > 0) / q and draws its count.
  auto consider = [&](uint32_t g, double rate, double log2_rate, double q) {
    const int level = this->level[g];
    const ZeroOne z = table.Lookup(level, log2s + log2_rate);
    if (rng.Uniform() * q >= z.pnz) return;
    counts[g] = rng.Uniform() < z.one ? 1 : SampleCountAboveOne(s * rate, level, rng);
    bits[g >> 6] |= uint64_t{1} << (g & 63);
  };
  for (const auto& b : p.buckets) {
    // q bounds P(count > 0) of every gene in the bucket (the Poisson limit is the
    // largest); candidates are accepted with probability P(count > 0) / q.
    const double q = -std::expm1(-s * b.pimax);
    if (q <= 0) continue;
    if (q > 0.25) {
      for (uint32_t i = b.begin; i < b.end; ++i) {
        const uint32_t g = p.order[i];
        consider(g, p.pi[g], p.log2pi[g], 1.0);
      }
      continue;
    }
    const double inv_log = 1.0 / std::log1p(-q);
    // Geometric jumps: the number of genes skipped before the next candidate.
    uint32_t i = b.begin;
    while (true) {
      const double skip = FastLog(rng.Uniform()) * inv_log;  // >= 0
      if (skip >= static_cast<double>(b.end - i)) break;
      i += static_cast<uint32_t>(skip);  // truncation = floor
      const uint32_t g = p.order[i];
      consider(g, p.pi[g], p.log2pi[g], q);
      if (++i >= b.end) break;
    }
  }
  for (const auto& [g, rate] : *setup.sex_genes) consider(g, rate, std::log2(rate), 1.0);

  int64_t nnz = 0;
  double total = 0;
  for (size_t w = 0; w < ws.bits.size(); ++w) {
    uint64_t word = bits[w];
    bits[w] = 0;
    while (word) {
      auto g = static_cast<uint32_t>(w * 64 + static_cast<size_t>(std::countr_zero(word)));
      word &= word - 1;
      uint32_t k = counts[g];
      out->indices.push_back(static_cast<int32_t>(g));
      out->data.push_back(static_cast<float>(k));
      ++out->gene_nnz[g];
      out->gene_sum[g] += k;
      total += k;
      ++nnz;
    }
  }
  out->row_nnz.push_back(nnz);
  out->row_total.push_back(total);
}

double Dataset::Model::ExpectedDensity(double s_scale,
                                       const std::vector<std::pair<const Profile*, double>>& cells,
                                       const std::vector<uint32_t>& genes) const {
  const ZeroOneTable& table = ZeroOneTable::Get();
  double sum = 0;
  for (const auto& [profile, factor] : cells) {
    const double log2s = std::log2(s_scale * factor);
    for (uint32_t g : genes)
      if (profile->pi[g] > 0) sum += table.Lookup(level[g], log2s + profile->log2pi[g]).pnz;
  }
  return sum / static_cast<double>(cells.size() * genes.size());
}

Dataset::Dataset() : m_(std::make_unique<Model>()) {}
Dataset::Dataset(Dataset&&) noexcept = default;
Dataset& Dataset::operator=(Dataset&&) noexcept = default;
Dataset::~Dataset() = default;

const std::string& Dataset::name() const { return m_->name; }
const std::string& Dataset::title() const { return m_->title; }
int64_t Dataset::n_cells() const { return m_->n_cells; }
int64_t Dataset::n_genes() const { return m_->n_genes; }
double Dataset::target_density() const { return m_->target_density; }
const std::vector<Categorical>& Dataset::obs() const { return m_->obs; }
const std::vector<std::string>& Dataset::gene_ids() const { return m_->ids; }
const std::vector<std::string>& Dataset::gene_symbols() const { return m_->symbols; }
const std::vector<std::string>& Dataset::gene_biotypes() const { return m_->biotypes; }

namespace {

// The tissues a dataset sampled: its study's tissue, and perhaps a second one.
struct TissuePlan {
  TissueId primary = kLung;
  std::vector<TissueId> tissues;   // in the order drawn: the primary tissue first
  std::vector<std::string> names;  // sorted, as the tissue column's categories
  std::vector<size_t> rank;        // per entry of `tissues`: its category code
  uint32_t mask = 0;               // a bit per tissue, as CellTypeInfo::tissues
};

// The datasets of a run cycle through the tissues in a seed-given order (so a run of
// five covers them all); half of them also sampled a second tissue (blood, or lung
// for a blood study).
TissuePlan PlanTissues(uint64_t seed, int index, Rng& rng) {
  std::vector<int> tissue_order(kNumTissues);
  std::iota(tissue_order.begin(), tissue_order.end(), 0);
  Rng order_rng(SubSeed(seed, kTagTissueOrder));
  for (int i = kNumTissues - 1; i > 0; --i)
    std::swap(tissue_order[static_cast<size_t>(i)],
              tissue_order[order_rng.Below(static_cast<uint64_t>(i) + 1)]);
  TissuePlan t;
  t.primary = static_cast<TissueId>(tissue_order[static_cast<size_t>(index) % kNumTissues]);
  t.tissues = {t.primary};
  if (rng.Uniform() < 0.5) t.tissues.push_back(t.primary == kBlood ? kLung : kBlood);
  std::vector<std::string> drawn;
  for (TissueId id : t.tissues) drawn.push_back(Tissues()[id].name);
  t.names = drawn;
  std::sort(t.names.begin(), t.names.end());
  t.rank.resize(t.tissues.size());
  for (size_t i = 0; i < t.tissues.size(); ++i)
    t.rank[i] =
        static_cast<size_t>(std::find(t.names.begin(), t.names.end(), drawn[i]) - t.names.begin());
  for (TissueId id : t.tissues) t.mask |= 1u << id;
  return t;
}

// Donors: sex (both present), disease (some donors of each state), and a cancer stage
// for donors with cancer. Fills the model's per-donor columns; returns each donor's
// stage code (-1: none).
std::vector<int32_t> PlanDonors(bool cancer, Rng& rng, Dataset::Model& m) {
  const int n_donors = 4 + static_cast<int>(rng.Below(5));
  m.donor_female.resize(static_cast<size_t>(n_donors));
  for (auto& f : m.donor_female) f = static_cast<uint8_t>(rng.Below(2));
  if (std::all_of(m.donor_female.begin(), m.donor_female.end(),
                  [&](uint8_t f) { return f == m.donor_female[0]; }))
    m.donor_female[rng.Below(static_cast<uint64_t>(n_donors))] ^= 1;
  const int n_diseased = std::clamp(
      static_cast<int>(std::lround(n_donors * (0.5 + 0.25 * rng.Uniform()))), 1, n_donors - 1);
  std::vector<int> donor_perm(static_cast<size_t>(n_donors));
  std::iota(donor_perm.begin(), donor_perm.end(), 0);
  for (int i = n_donors - 1; i > 0; --i)
    std::swap(donor_perm[static_cast<size_t>(i)],
              donor_perm[rng.Below(static_cast<uint64_t>(i) + 1)]);
  m.donor_diseased.assign(static_cast<size_t>(n_donors), 0);
  for (int i = 0; i < n_diseased; ++i)
    m.donor_diseased[static_cast<size_t>(donor_perm[static_cast<size_t>(i)])] = 1;
  std::vector<int32_t> donor_stage(static_cast<size_t>(n_donors), -1);
  const std::vector<double> stage_cum = {0.3, 0.6, 0.85, 1.0};
  for (int dn = 0; dn < n_donors; ++dn)
    if (cancer && m.donor_diseased[static_cast<size_t>(dn)])
      donor_stage[static_cast<size_t>(dn)] = static_cast<int32_t>(PickWeighted(stage_cum, rng));
  return donor_stage;
}

// The cell types of a dataset, in code order.
struct CellTypePlan {
  std::vector<size_t> chosen;     // indices into CellTypes(), sorted by name
  std::vector<double> abundance;  // per cell type code: this dataset's typical share
};

// 10-25 of the cell types living in the dataset's tissues, drawn by abundance
// (Efraimidis-Spirakis keys); the malignant type in every cancer study.
CellTypePlan PlanCellTypes(uint32_t tissue_mask, bool cancer, Rng& rng) {
  const auto& catalog = CellTypes();
  std::vector<std::pair<double, size_t>> keyed;
  for (size_t c = 0; c < catalog.size(); ++c) {
    if (!(catalog[c].tissues & tissue_mask)) continue;
    if (catalog[c].malignant && !cancer) continue;
    double key = catalog[c].malignant ? 0.0 : std::log(rng.Uniform()) / catalog[c].abundance;
    keyed.emplace_back(key, c);
  }
  std::sort(keyed.begin(), keyed.end(), std::greater<>());
  const size_t n_types = std::min(keyed.size(), static_cast<size_t>(10 + rng.Below(16)));
  CellTypePlan p;
  for (size_t i = 0; i < n_types; ++i) p.chosen.push_back(keyed[i].second);
  std::sort(p.chosen.begin(), p.chosen.end(),
            [&](size_t a, size_t b) { return std::string(catalog[a].name) < catalog[b].name; });
  for (size_t c : p.chosen) p.abundance.push_back(catalog[c].abundance * rng.LogNormal(0.6));
  return p;
}

// The slot of a (donor, tissue) sample in the model's per-sample vectors.
size_t SampleSlot(const TissuePlan& t, int donor, size_t tissue) {
  return static_cast<size_t>(donor) * t.tissues.size() + t.rank[tissue];
}

// Samples: each donor in the primary tissue, most also in the second one (at least
// one donor, so that the second tissue is not a category without cells). Fills the
// model's per-sample size factors and barcode numbers; returns each sample's weight
// in the split of the cells (0: not sampled).
std::vector<double> PlanSamples(const TissuePlan& t, int n_donors, Rng& rng, Dataset::Model& m) {
  const auto n_samples_max = static_cast<size_t>(n_donors) * t.tissues.size();
  std::vector<double> sample_weight(n_samples_max, 0);
  m.sample_size.assign(n_samples_max, 1.0);
  m.sample_number.assign(n_samples_max, 0);
  int32_t next_sample = 0;
  for (size_t ti = 0; ti < t.tissues.size(); ++ti) {
    bool any = false;
    for (int dn = 0; dn < n_donors; ++dn) {
      bool present = ti == 0 || rng.Uniform() < 0.7 || (dn == n_donors - 1 && !any);
      size_t slot = SampleSlot(t, dn, ti);
      m.sample_size[slot] = rng.LogNormal(0.2);
      if (!present) continue;
      any = true;
      sample_weight[slot] = rng.LogNormal(0.5);
      m.sample_number[slot] = ++next_sample;
    }
  }
  return sample_weight;
}

// The obs columns' names and categories (sorted where pandas would sort them), with a
// code slot per cell. Returns the disease column's code of "normal".
int32_t DescribeObs(const TissuePlan& t, const TissueInfo& study, const CellTypePlan& types,
                    int n_donors, int index, int64_t cells, Dataset::Model& m) {
  m.obs.resize(kNumObs);
  const char* names[kNumObs] = {"cell_type", "tissue", "disease", "cancer_stage", "sex", "donor"};
  for (int i = 0; i < kNumObs; ++i) {
    m.obs[static_cast<size_t>(i)].name = names[i];
    m.obs[static_cast<size_t>(i)].codes.resize(static_cast<size_t>(cells));
  }
  for (size_t c : types.chosen) m.obs[kCellType].categories.emplace_back(CellTypes()[c].name);
  m.obs[kTissue].categories = t.names;
  m.obs[kDisease].categories = {study.disease, "normal"};
  std::sort(m.obs[kDisease].categories.begin(), m.obs[kDisease].categories.end());
  m.obs[kStage].categories = {"I", "II", "III", "IV"};
  m.obs[kStage].ordered = true;
  m.obs[kSex].categories = {"female", "male"};
  for (int dn = 0; dn < n_donors; ++dn)
    m.obs[kDonor].categories.push_back(
        Concat("S", ZeroPad(index + 1, 2), "-D", ZeroPad(dn + 1, 2)));
  return m.obs[kDisease].categories[0] == "normal" ? 0 : 1;
}

// One sample's cell type proportions, as cumulative weights: the dataset's abundances
// with noise of the sample's own, only types living in its tissue; malignant cells only
// in the primary tissue of donors with cancer, more of them at later stages.
std::vector<double> SampleTypeWeights(const CellTypePlan& types, TissueId tissue,
                                      bool primary_tissue, int32_t stage, Rng& rng) {
  const double stage_factor[kStages] = {0.5, 1.0, 1.6, 2.4};
  std::vector<double> cum;
  double acc = 0;
  for (size_t k = 0; k < types.chosen.size(); ++k) {
    const CellTypeInfo& info = CellTypes()[types.chosen[k]];
    double w = 0;
    if (info.tissues & (1u << tissue)) {
      w = types.abundance[k] * rng.LogNormal(0.35);
      if (info.malignant) w = primary_tissue && stage >= 0 ? w * stage_factor[stage] : 0;
    }
    cum.push_back(acc += w);
  }
  if (acc <= 0)  // none of the chosen types lives here: any of them will do
    for (size_t k = 0; k < cum.size(); ++k) cum[k] = static_cast<double>(k + 1);
  return cum;
}

// Every cell's obs codes, sample by sample (so that a sample's cells are consecutive
// rows), each sample's cells split by its own cell type proportions.
void AssignCells(const TissuePlan& t, const CellTypePlan& types,
                 const std::vector<int32_t>& donor_stage, const std::vector<double>& sample_weight,
                 int32_t normal_code, int64_t cells, Rng& rng, Dataset::Model& m) {
  const std::vector<int64_t> per_sample = Apportion(cells, sample_weight);
  const auto n_donors = static_cast<int>(donor_stage.size());
  int64_t cell = 0;
  for (int dn = 0; dn < n_donors; ++dn) {
    for (size_t ti = 0; ti < t.tissues.size(); ++ti) {
      size_t slot = SampleSlot(t, dn, ti);
      if (per_sample[slot] == 0) continue;
      const auto d = static_cast<size_t>(dn);
      const std::vector<double> cum =
          SampleTypeWeights(types, t.tissues[ti], ti == 0, donor_stage[d], rng);
      for (int64_t i = 0; i < per_sample[slot]; ++i, ++cell) {
        auto c = static_cast<size_t>(cell);
        m.obs[kCellType].codes[c] = static_cast<int32_t>(PickWeighted(cum, rng));
        m.obs[kTissue].codes[c] = static_cast<int32_t>(t.rank[ti]);
        m.obs[kDisease].codes[c] = m.donor_diseased[d] ? 1 - normal_code : normal_code;
        m.obs[kStage].codes[c] = donor_stage[d];
        m.obs[kSex].codes[c] = m.donor_female[d] ? 0 : 1;
        m.obs[kDonor].codes[c] = dn;
      }
    }
  }
}

// The dataset's genes, as columns of its matrix.
struct GenePlan {
  std::vector<UniverseGene> universe;
  std::vector<size_t> picked;                           // per column: its universe gene
  std::unordered_map<std::string, uint32_t> by_symbol;  // column of each known gene
};

// Every known gene plus a random subset of the synthetic ones, in universe order (so
// the datasets of a run share most genes, in the same order). Fills the model's var
// columns, dispersion levels and sex-specific genes.
GenePlan PickGenes(const Options& o, Rng& rng, Dataset::Model& m) {
  GenePlan p;
  p.universe = MakeUniverse(o);
  const std::vector<UniverseGene>& universe = p.universe;
  std::vector<size_t> synthetic;
  std::vector<size_t>& picked = p.picked;
  for (size_t u = 0; u < universe.size(); ++u)
    (universe[u].group == GeneGroup::kSynthetic ? synthetic : picked).push_back(u);
  const size_t n_synthetic =
      static_cast<size_t>(o.genes) - std::min(picked.size(), static_cast<size_t>(o.genes));
  for (size_t i = 0; i < n_synthetic; ++i)
    std::swap(synthetic[i], synthetic[i + rng.Below(synthetic.size() - i)]);
  picked.insert(picked.end(), synthetic.begin(),
                synthetic.begin() + static_cast<long>(n_synthetic));
  std::sort(picked.begin(), picked.end());
  picked.resize(static_cast<size_t>(o.genes));
  for (size_t j = 0; j < picked.size(); ++j) {
    const UniverseGene& g = universe[picked[j]];
    m.ids.push_back(g.id);
    m.symbols.push_back(g.symbol);
    m.biotypes.push_back(g.biotype);
    m.level.push_back(LevelOf(g.r));
    if (g.group != GeneGroup::kSynthetic) p.by_symbol.emplace(g.symbol, static_cast<uint32_t>(j));
    if (g.group == GeneGroup::kFemale || g.group == GeneGroup::kMale)
      (g.group == GeneGroup::kFemale ? m.female_genes : m.male_genes)
          .emplace_back(static_cast<uint32_t>(j), static_cast<float>(std::exp(g.base)));
  }
  return p;
}

// Expression profiles per (cell type, disease state): a gene's base level, the cell
// type's own deviations (the same in every dataset of a seed), this dataset's batch
// effect, marker genes strongly up, and the disease's response genes. Each value draws
// from a stream of its own (seed, purpose, cell type, universe gene), so that it does
// not depend on which other genes or types a dataset has.
void MakeProfiles(const GenePlan& genes, const CellTypePlan& types, bool cancer, uint64_t seed,
                  uint64_t ix, Dataset::Model& m) {
  const auto& catalog = CellTypes();
  const size_t n_genes = genes.picked.size();
  std::vector<double> batch(n_genes);
  for (size_t j = 0; j < n_genes; ++j)
    batch[j] = kBatchSd * Rng(SubSeed(seed, kTagBatch, ix, genes.picked[j])).Normal();
  for (const size_t c : types.chosen) {
    std::vector<uint8_t> is_marker(n_genes, 0);
    for (const char* s : catalog[c].markers) is_marker[genes.by_symbol.at(s)] = 1;
    std::vector<float> healthy(n_genes, 0), diseased(n_genes, 0);
    for (size_t j = 0; j < n_genes; ++j) {
      const size_t u = genes.picked[j];
      const UniverseGene& g = genes.universe[u];
      if (g.group == GeneGroup::kFemale || g.group == GeneGroup::kMale) continue;
      double lp =
          g.base + batch[j] + kTypeNoiseSd * Rng(SubSeed(seed, kTagTypeNoise, c, u)).Normal();
      if (is_marker[j]) lp = batch[j] + Rng(SubSeed(seed, kTagMarker, c, u)).Normal(3.8, 0.4);
      double ld = lp + g.disease;
      if ((g.group == GeneGroup::kInterferon && !cancer) ||
          (g.group == GeneGroup::kTumour && cancer))
        ld += std::max(0.5, Rng(SubSeed(seed, kTagDiseaseGene, c, u)).Normal(1.8, 0.6));
      healthy[j] = static_cast<float>(std::exp(lp));
      diseased[j] = static_cast<float>(std::exp(ld));
    }
    m.profiles.push_back(MakeProfile(std::move(healthy)));
    m.profiles.push_back(MakeProfile(std::move(diseased)));
    m.type_rna.push_back(catalog[c].rna * Rng(SubSeed(seed, kTagTypeRna, c)).LogNormal(0.15));
  }
}

// Library size scale: the expected fraction of non-zero counts over a sample of
// cells (and of genes, for wide matrices) meets the dataset's target density. A
// bisection on log(scale): the density grows with the scale.
void CalibrateScale(int64_t cells, uint64_t seed, uint64_t ix, Dataset::Model& m) {
  Rng cal(SubSeed(seed, kTagCalibration, ix));
  std::vector<std::pair<const Profile*, double>> probes;
  const int64_t n_probe = std::min<int64_t>(cells, 256);
  for (int64_t i = 0; i < n_probe; ++i) {
    int64_t c = cells <= 256 ? i : static_cast<int64_t>(cal.Below(static_cast<uint64_t>(cells)));
    m.scale = 1;
    Dataset::Model::CellSetup s = m.Setup(c, cal);
    probes.emplace_back(s.profile, s.library);
  }
  std::vector<uint32_t> genes;
  const auto n_genes = static_cast<size_t>(m.n_genes);
  const size_t stride = std::max<size_t>(1, n_genes / 4096);
  for (size_t j = 0; j < n_genes; j += stride) genes.push_back(static_cast<uint32_t>(j));
  double lo = std::log(1e-8), hi = std::log(1e8);
  for (int it = 0; it < 30; ++it) {
    double mid = (lo + hi) / 2;
    (m.ExpectedDensity(std::exp(mid), probes, genes) < m.target_density ? lo : hi) = mid;
  }
  m.scale = std::exp((lo + hi) / 2);
}

}  // namespace

// The phases below share one random stream (`rng`) and must keep drawing from it in
// this order: a seed's datasets are pinned by tests, number for number.
Dataset Dataset::Plan(const Options& o, int index) {
  Dataset d;
  Model& m = *d.m_;
  const uint64_t seed = o.seed;
  const auto ix = static_cast<uint64_t>(index);
  Rng rng(SubSeed(seed, kTagDataset, ix));
  m.name = Concat("synth_", ZeroPad(index + 1, 2));
  m.n_cells = o.cells;
  m.n_genes = o.genes;
  m.cell_seed = SubSeed(seed, kTagCells, ix);
  m.barcode_seed = SubSeed(seed, kTagBarcodes, ix);
  m.target_density = 0.06 + 0.06 * rng.Uniform();

  const TissuePlan tissues = PlanTissues(seed, index, rng);
  m.n_tissues = static_cast<int64_t>(tissues.tissues.size());
  const TissueInfo& study = Tissues()[tissues.primary];
  const std::vector<int32_t> donor_stage = PlanDonors(study.cancer, rng, m);
  const auto n_donors = static_cast<int>(donor_stage.size());
  const CellTypePlan types = PlanCellTypes(tissues.mask, study.cancer, rng);
  const std::vector<double> sample_weight = PlanSamples(tissues, n_donors, rng, m);
  const int32_t normal_code = DescribeObs(tissues, study, types, n_donors, index, o.cells, m);
  AssignCells(tissues, types, donor_stage, sample_weight, normal_code, o.cells, rng, m);
  const GenePlan genes = PickGenes(o, rng, m);
  MakeProfiles(genes, types, study.cancer, seed, ix, m);
  CalibrateScale(o.cells, seed, ix, m);

  m.title = Concat("synthetic ", study.name, " study: ", study.disease, " and normal, ",
                   std::to_string(n_donors), " donors, ", std::to_string(types.chosen.size()),
                   " cell types (cellcube synth, seed ", std::to_string(seed), ")");
  return d;
}

std::vector<std::string> Dataset::Barcodes() const {
  const Model& m = *m_;
  const auto n = static_cast<size_t>(m.n_cells);
  std::vector<int32_t> sample(n);
  for (size_t c = 0; c < n; ++c)
    sample[c] = m.sample_number[static_cast<size_t>(m.obs[kDonor].codes[c]) *
                                    static_cast<size_t>(m.n_tissues) +
                                static_cast<size_t>(m.obs[kTissue].codes[c])];
  // 16 bases (32 random bits) per cell, redrawn until unique within the sample.
  Rng rng(m.barcode_seed);
  std::vector<uint64_t> keys(n);
  for (size_t c = 0; c < n; ++c)
    keys[c] = (static_cast<uint64_t>(sample[c]) << 32) | (rng.Next() >> 32);
  while (true) {
    std::vector<uint64_t> sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    std::vector<uint64_t> dups;
    for (size_t i = 1; i < sorted.size(); ++i)
      if (sorted[i] == sorted[i - 1] && (dups.empty() || dups.back() != sorted[i]))
        dups.push_back(sorted[i]);
    if (dups.empty()) break;
    std::vector<uint8_t> kept(dups.size(), 0);
    for (size_t c = 0; c < n; ++c) {
      auto it = std::lower_bound(dups.begin(), dups.end(), keys[c]);
      if (it == dups.end() || *it != keys[c]) continue;
      auto k = static_cast<size_t>(it - dups.begin());
      if (!kept[k]) {
        kept[k] = 1;
        continue;
      }
      keys[c] = (static_cast<uint64_t>(sample[c]) << 32) | (rng.Next() >> 32);
    }
  }
  static const char kBases[4] = {'A', 'C', 'G', 'T'};
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t c = 0; c < n; ++c) {
    std::string s(16, 'A');
    auto bits = static_cast<uint32_t>(keys[c]);
    for (int i = 15; i >= 0; --i, bits >>= 2) s[static_cast<size_t>(i)] = kBases[bits & 3];
    s += '-';
    s += std::to_string(sample[c]);
    out.push_back(std::move(s));
  }
  return out;
}

void Dataset::Generate(int64_t begin, int64_t end, CsrRows* out) const {
  const Model& m = *m_;
  thread_local Workspace ws;
  const auto g = static_cast<size_t>(m.n_genes);
  ws.bits.assign((g + 63) / 64, 0);
  ws.counts.resize(g);
  out->row_begin = begin;
  out->n_rows = end - begin;
  out->row_nnz.clear();
  out->row_total.clear();
  out->indices.clear();
  out->data.clear();
  out->gene_nnz.assign(g, 0);
  out->gene_sum.assign(g, 0);
  const auto expect = static_cast<size_t>(static_cast<double>(end - begin) *
                                          static_cast<double>(g) * m.target_density * 1.2);
  out->indices.reserve(expect);
  out->data.reserve(expect);
  for (int64_t cell = begin; cell < end; ++cell) m.Cell(cell, ws, out);
}

RowStream::RowStream(const Dataset& dataset, int64_t rows_per_block, int threads)
    : dataset_(dataset),
      rows_per_block_(std::max<int64_t>(1, rows_per_block)),
      n_blocks_((dataset.n_cells() + rows_per_block_ - 1) / rows_per_block_),
      window_(std::max(1, threads) + 1) {
  for (int i = 0; i < std::max(1, threads); ++i) workers_.emplace_back([this] { Work(); });
}

RowStream::~RowStream() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void RowStream::Work() {
  while (true) {
    int64_t block = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Stay at most `window_` blocks ahead of the consumer: memory stays bounded.
      cv_.wait(lock, [&] {
        return stop_ || next_to_start_ >= n_blocks_ || next_to_start_ < next_to_hand_out_ + window_;
      });
      if (stop_ || next_to_start_ >= n_blocks_) return;
      block = next_to_start_++;
    }
    CsrRows rows;
    std::string error;
    try {
      int64_t begin = block * rows_per_block_;
      dataset_.Generate(begin, std::min(begin + rows_per_block_, dataset_.n_cells()), &rows);
    } catch (const std::bad_alloc&) {
      error = "out of memory generating cells";
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error.empty() && error_.empty()) error_ = error;
      done_.emplace(block, std::move(rows));
    }
    cv_.notify_all();
  }
}

Result<bool> RowStream::Next(CsrRows* out) {
  std::unique_lock<std::mutex> lock(mu_);
  if (next_to_hand_out_ >= n_blocks_) return false;
  cv_.wait(lock, [&] { return !error_.empty() || done_.count(next_to_hand_out_) > 0; });
  if (!error_.empty()) return Status::Internal(error_);
  auto it = done_.find(next_to_hand_out_);
  *out = std::move(it->second);
  done_.erase(it);
  ++next_to_hand_out_;
  lock.unlock();
  cv_.notify_all();
  return true;
}

}  // namespace cellcube::synth
