// ops.h - the kernels that ops.cpp registers, one file per group of ops.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/Dict.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

extern "C" {
#include "core/torchfits_core.h"
}

namespace torchfits {

// image_ops.cpp
at::Tensor read(const std::string& path, int64_t hdu, bool raw);
at::Tensor read_name(const std::string& path, const std::string& hdu, int64_t extver, bool raw);
at::Tensor read_cutout(const std::string& path, int64_t hdu, at::IntArrayRef start,
                       at::IntArrayRef shape, at::OptionalIntArrayRef step, bool raw);
at::Tensor read_cutout_name(const std::string& path, const std::string& hdu, int64_t extver,
                            at::IntArrayRef start, at::IntArrayRef shape,
                            at::OptionalIntArrayRef step, bool raw);
at::Tensor read_cfitsio(const std::string& path, int64_t hdu, at::IntArrayRef start,
                        at::IntArrayRef shape, at::OptionalIntArrayRef step, bool raw);

// header_ops.cpp
c10::Dict<std::string, std::string> read_header(const std::string& path, int64_t hdu);
c10::Dict<std::string, std::string> read_header_name(const std::string& path,
                                                     const std::string& hdu, int64_t extver);
std::tuple<std::vector<std::string>, std::vector<std::string>, std::vector<std::string>,
           std::vector<std::string>>
read_header_cards(const std::string& path, int64_t hdu);
int64_t num_hdus(const std::string& path);
int64_t find_hdu_op(const std::string& path, const std::string& extname, int64_t extver);
// What info returns: per HDU its kind, shape, dtype, EXTNAME, EXTVER,
// BITPIX and whether it is tile-compressed.
using InfoTuple =
    std::tuple<std::vector<std::string>, std::vector<std::vector<int64_t>>, std::vector<std::string>,
               std::vector<std::string>, std::vector<int64_t>, std::vector<int64_t>, c10::List<bool>>;
InfoTuple info(const std::string& path);

// data_ops.cpp
void read_into(const std::string& path, int64_t hdu, at::Tensor& out, bool raw);
void read_cutout_into(const std::string& path, int64_t hdu, at::IntArrayRef start,
                      at::Tensor& out, at::OptionalIntArrayRef step, bool raw);
std::tuple<at::Tensor, at::Tensor> read_batch(const std::vector<std::string>& paths, int64_t hdu,
                                              at::OptionalIntArrayRef start,
                                              at::OptionalIntArrayRef shape,
                                              at::OptionalIntArrayRef step, bool raw,
                                              bool skip_errors, int64_t threads);
at::Tensor read_batch_into(const std::vector<std::string>& paths, int64_t hdu, at::Tensor& out,
                           at::OptionalIntArrayRef start, at::OptionalIntArrayRef step, bool raw,
                           bool skip_errors, int64_t threads);
at::Tensor read_cutouts(const std::vector<std::string>& paths, at::IntArrayRef hdus,
                        const at::Tensor& items, at::IntArrayRef shape, double fill,
                        c10::optional<at::ScalarType> dtype, int64_t threads);

// table_ops.cpp
// (rows, names, TFORM, TUNIT, TDIM, repeat, per-row shape, dtype, TSCAL,
// TZERO, TNULL, has TNULL)
using TableInfo =
    std::tuple<int64_t, std::vector<std::string>, std::vector<std::string>,
               std::vector<std::string>, std::vector<std::string>, std::vector<int64_t>,
               std::vector<std::vector<int64_t>>, std::vector<std::string>, std::vector<double>,
               std::vector<double>, std::vector<int64_t>, c10::List<bool>>;
c10::Dict<std::string, at::Tensor> read_table(const std::string& path, int64_t hdu,
                                              const c10::optional<std::vector<std::string>>& columns,
                                              int64_t start_row, int64_t num_rows);
c10::Dict<std::string, at::Tensor> read_table_name(const std::string& path,
                                                   const std::string& hdu,
                                                   const c10::optional<std::vector<std::string>>& columns,
                                                   int64_t start_row, int64_t num_rows,
                                                   int64_t extver);
c10::Dict<std::string, at::Tensor> read_table_cfitsio(const std::string& path, int64_t hdu,
                                                      const c10::optional<std::vector<std::string>>& columns,
                                                      int64_t start_row, int64_t num_rows);
// The named fixed-width columns as a list, in the order asked: what
// torch.compile can trace (it cannot trace an op returning a dict).
// Row i of a variable-length column: values[offsets[i]:offsets[i+1]].
std::vector<at::Tensor> split_rows(const at::Tensor& values, const at::Tensor& offsets);
std::vector<at::Tensor> read_columns(const std::string& path, int64_t hdu,
                                     const std::vector<std::string>& columns, int64_t start_row,
                                     int64_t num_rows);
TableInfo table_info(const std::string& path, int64_t hdu);
TableInfo table_info_name(const std::string& path, const std::string& hdu, int64_t extver);

// config_ops.cpp: the core's process-wide settings by name (threads,
// keep_mb, unpack_max_mb); set_option returns the previous value.
int64_t set_option(const std::string& name, int64_t value);
int64_t get_option(const std::string& name);
void set_remote_config(const std::string& key, const c10::optional<std::string>& value);
std::vector<int64_t> remote_stats(bool reset);

// wcs_ops.cpp: sky coordinates through wcslib. world and pixel are float64
// [N, naxis]; pixel coordinates are 0-based (astropy's origin 0); alt is ""
// for the primary WCS or a letter A-Z; wcslib: every point through wcslib
// (bit for bit astropy), not the closed form for TAN and TAN-SIP.
at::Tensor world_to_pixel(const std::string& path, int64_t hdu, const at::Tensor& world,
                          const std::string& alt, bool wcslib);
at::Tensor pixel_to_world(const std::string& path, int64_t hdu, const at::Tensor& pixel,
                          const std::string& alt, bool wcslib);
// (CTYPE, CUNIT, CRVAL, CRPIX, pixel scale per pixel axis, image shape in
// FITS order (NAXISn), footprint corners float64 [4, naxis])
using WcsInfo = std::tuple<std::vector<std::string>, std::vector<std::string>, std::vector<double>,
                           std::vector<double>, std::vector<double>, std::vector<int64_t>,
                           at::Tensor>;
WcsInfo wcs_info(const std::string& path, int64_t hdu, const std::string& alt);

// The kernels on a handle already open: for the File class.
InfoTuple info_open(tf_file* f);
at::Tensor read_open(tf_file* f, int64_t hdu, bool raw);
// Regions of one shape, starts flattened (N x ndim), into one [N, *shape].
at::Tensor read_cutouts_open(tf_file* f, int64_t hdu, at::IntArrayRef starts,
                             at::IntArrayRef shape, bool raw);
at::Tensor read_cutout_open(tf_file* f, int64_t hdu, at::IntArrayRef start, at::IntArrayRef shape,
                            at::OptionalIntArrayRef step, bool raw);

// torch.classes.torchfits.File: a file kept open across reads (file_class.cpp).
void register_file_class(torch::Library& m);

}  // namespace torchfits
