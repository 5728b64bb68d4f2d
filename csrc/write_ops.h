// write_ops.h - the kernels of the write ops (write_ops.cpp), registered in
// ops.cpp. Apart from ops.h so that the read kernels do not rebuild with it.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/List.h>

#include <string>
#include <tuple>
#include <vector>

namespace torchfits {

// An image HDU per entry of data (None: no data), with ncards[h] header
// cards each, taken in order from keys/values/comments/types; per-HDU
// compression lists (empty: none, defaults). Returns the file's size.
int64_t write(const std::string& path, const c10::List<c10::optional<at::Tensor>>& data,
              at::IntArrayRef ncards, const std::vector<std::string>& keys,
              const std::vector<std::string>& values, const std::vector<std::string>& comments,
              const std::vector<std::string>& types, bool overwrite, bool checksum,
              const c10::optional<std::vector<std::string>>& compress_opt, at::IntArrayRef tile,
              at::IntArrayRef tile_ndim, at::ArrayRef<double> quantize_level,
              at::IntArrayRef quantize_method, at::IntArrayRef dither_seed,
              at::ArrayRef<double> hcomp_scale, bool sync);

// An empty primary and a binary table of the columns ([rows, *cell] each;
// kinds[c] "" from the dtype, bool as L, or "A": uint8 [rows, width] strings).
int64_t write_table(const std::string& path, const std::vector<std::string>& names,
                    const std::vector<at::Tensor>& columns, const std::vector<std::string>& kinds,
                    const std::vector<std::string>& units, const std::vector<std::string>& keys,
                    const std::vector<std::string>& values, const std::vector<std::string>& comments,
                    const std::vector<std::string>& types, bool overwrite, bool checksum,
                    bool sync);

// Images and tables mixed (hdu_kinds[h] "image" or "table"), to a new
// file or (append) after the HDUs of an existing one. See ops.cpp.
int64_t write_hdus(const std::string& path, const std::vector<std::string>& hdu_kinds,
                   const c10::List<c10::optional<at::Tensor>>& images, at::IntArrayRef ncards,
                   const std::vector<std::string>& keys, const std::vector<std::string>& values,
                   const std::vector<std::string>& comments, const std::vector<std::string>& types,
                   at::IntArrayRef ncols, const std::vector<std::string>& names,
                   const std::vector<at::Tensor>& columns,
                   const c10::List<c10::optional<at::Tensor>>& offsets,
                   const std::vector<std::string>& col_kinds, const std::vector<std::string>& units,
                   at::ArrayRef<double> tscal, at::ArrayRef<double> tzero, at::IntArrayRef tnull,
                   at::IntArrayRef col_flags, const std::vector<std::string>& compress,
                   at::IntArrayRef tile, at::IntArrayRef tile_ndim,
                   at::ArrayRef<double> quantize_level, at::IntArrayRef quantize_method,
                   at::IntArrayRef dither_seed, at::ArrayRef<double> hcomp_scale, bool overwrite,
                   bool append, bool checksum, bool sync);

// Per HDU: (DATASUM status, CHECKSUM status), each 1, 0 or -1.
std::tuple<std::vector<int64_t>, std::vector<int64_t>> verify_checksum(const std::string& path);

}  // namespace torchfits
