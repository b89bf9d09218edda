// stats.h: order statistics of measured samples.
#ifndef LABHOST_BENCH_STATS_H
#define LABHOST_BENCH_STATS_H

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace labhost::bench {

/// The nearest-rank percentile (q in (0, 1]; 0.5 is the median) of `samples`; 0 when empty.
inline double percentile(std::vector<double> samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples.size())));
  return samples[std::clamp<std::size_t>(rank, 1, samples.size()) - 1];
}

}  // namespace labhost::bench

#endif  // LABHOST_BENCH_STATS_H
