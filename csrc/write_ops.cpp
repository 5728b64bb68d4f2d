// write_ops.cpp - kernels of the write ops: tensors and header cards in,
// a tf_writer (csrc/core/write/) out. No FITS logic lives here.
#include "ops.h"
#include "write_ops.h"
#include "shim.h"

#include <cmath>
#include <cstring>
#include <memory>

namespace torchfits {
namespace {

struct WriterFree {
  void operator()(tf_writer* w) const { tf_writer_free(w); }
};
using WriterHandle = std::unique_ptr<tf_writer, WriterFree>;

void wcheck(int status, const tf_writer* w) {
  if (status != TF_OK) throw_status(status, tf_writer_errmsg(w));
}

tf_wtype write_type(at::ScalarType t, size_t hdu) {
  switch (t) {
    case at::kByte: return TF_W_UINT8;
    case at::kChar: return TF_W_INT8;
    case at::kShort: return TF_W_INT16;
    case at::kInt: return TF_W_INT32;
    case at::kLong: return TF_W_INT64;
    case at::kFloat: return TF_W_FLOAT32;
    case at::kDouble: return TF_W_FLOAT64;
#if TORCHFITS_HAS_UINT16
    case at::kUInt16: return TF_W_UINT16;
    case at::kUInt32: return TF_W_UINT32;
    case at::kUInt64: return TF_W_UINT64;
#endif
    default:
      TORCH_CHECK_TYPE(false, "data[", hdu, "]: dtype ", t,
                       " has no FITS image type (uint8, int8, int16, uint16, int32, uint32, "
                       "int64, uint64, float32, float64)");
  }
}

tf_codec codec_of(const std::string& name, size_t hdu) {
  if (name.empty() || name == "NONE") return TF_CODEC_NONE;
  if (name == "RICE_1") return TF_CODEC_RICE_1;
  if (name == "GZIP_1") return TF_CODEC_GZIP_1;
  if (name == "GZIP_2") return TF_CODEC_GZIP_2;
  if (name == "HCOMPRESS_1") return TF_CODEC_HCOMPRESS_1;
  if (name == "PLIO_1") return TF_CODEC_PLIO_1;
  TORCH_CHECK_VALUE(false, "compress[", hdu, "]: '", name,
                    "' is not RICE_1, GZIP_1, GZIP_2, HCOMPRESS_1, PLIO_1 or \"\"");
}

// A writer for `path` (an op's argument, see os_path).
WriterHandle create_writer(const std::string& path, bool overwrite, bool checksum, bool sync,
                           bool append = false) {
  TORCH_CHECK_VALUE(!(overwrite && append),
                    "overwrite and append exclude each other: append keeps the file's HDUs");
  tf_writer* raw = nullptr;
  int mode = append ? TF_WRITE_APPEND : overwrite ? TF_WRITE_OVERWRITE : TF_WRITE_NEW;
  int rc = tf_writer_create(&raw, os_path(path).c_str(), mode);
  WriterHandle w(raw);
  TORCH_CHECK(w, "out of memory");
  wcheck(rc, w.get());
  wcheck(tf_writer_set_checksum(w.get(), checksum ? 1 : 0), w.get());
  wcheck(tf_writer_set_sync(w.get(), sync ? 1 : 0), w.get());
  return w;
}

// The header cards as the core takes them (keys, values, comments and
// types of the same length, checked by the caller); they point into the
// strings, which outlive the write.
std::vector<tf_write_card> header_cards(const std::vector<std::string>& keys,
                                        const std::vector<std::string>& values,
                                        const std::vector<std::string>& comments,
                                        const std::vector<std::string>& types) {
  std::vector<tf_write_card> cards(keys.size());
  for (size_t i = 0; i < keys.size(); i++) {
    TORCH_CHECK_VALUE(types[i].size() == 1, "types[", i, "] is not one letter");
    cards[i].key = c_name(keys[i], " header key");
    cards[i].value = c_name(values[i], " header value");
    cards[i].comment = c_name(comments[i], " header comment");
    cards[i].type = types[i][0];
  }
  return cards;
}

}  // namespace

namespace {

// Per-HDU compression settings, as the ops take them (each list empty or
// one entry per HDU; tiles flattened, tile_ndim[h] axes each).
struct CompressArgs {
  const std::vector<std::string>& compress;
  at::IntArrayRef tile, tile_ndim;
  at::ArrayRef<double> quantize_level;
  at::IntArrayRef quantize_method, dither_seed;
  at::ArrayRef<double> hcomp_scale;
};

// Checks the per-HDU lists against nhdu HDUs.
void check_compress(const CompressArgs& a, size_t nhdu) {
  auto per_hdu = [nhdu](size_t n, const char* what) {
    TORCH_CHECK_VALUE(n == 0 || n == nhdu, what, " has ", n, " entries: give none or one per HDU (",
                      nhdu, ")");
  };
  per_hdu(a.compress.size(), "compress");
  per_hdu(a.tile_ndim.size(), "tile_ndim");
  int64_t want = 0;
  for (int64_t k : a.tile_ndim) {
    TORCH_CHECK_VALUE(k >= 0 && k <= TF_MAX_DIMS, "tile_ndim has an entry of ", k);
    want += k;
  }
  TORCH_CHECK_VALUE(static_cast<int64_t>(a.tile.size()) == want, "tile has ", a.tile.size(),
                    " entries, tile_ndim adds up to ", want);
  per_hdu(a.quantize_level.size(), "quantize_level");
  per_hdu(a.quantize_method.size(), "quantize_method");
  per_hdu(a.dither_seed.size(), "dither_seed");
  per_hdu(a.hcomp_scale.size(), "hcomp_scale");
}

// Image HDU h: its tensor (copied to contiguous CPU memory in host) and
// compression settings. tile_at walks the flattened tiles.
void prepare_image(const c10::optional<at::Tensor>& t, size_t h, const CompressArgs& a,
                   size_t& tile_at, at::Tensor& host, tf_write_image& img) {
  std::memset(&img, 0, sizeof img);
  if (t.has_value() && t->defined()) {
    img.dtype = write_type(t->scalar_type(), h);
    TORCH_CHECK_VALUE(t->dim() <= TF_MAX_DIMS, "data[", h, "] has ", t->dim(),
                      " axes; an image has at most ", TF_MAX_DIMS);
    TORCH_CHECK_VALUE(t->dim() >= 1, "data[", h,
                      "] is a 0-d tensor; give None for an HDU without data");
    host = t->detach().to(at::kCPU).contiguous();
    img.ndim = static_cast<int>(host.dim());
    for (int d = 0; d < img.ndim; d++) img.shape[d] = host.size(d);
    img.data = host.data_ptr();
    img.nbytes = static_cast<size_t>(host.numel()) * host.element_size();
  } else {
    img.dtype = TF_W_UINT8;
  }
  if (!a.compress.empty()) img.codec = codec_of(a.compress[h], h);
  if (!a.tile_ndim.empty()) {
    img.tile_ndim = static_cast<int>(a.tile_ndim[h]);
    for (int d = 0; d < img.tile_ndim; d++) img.tile[d] = a.tile[tile_at++];
  }
  if (!a.quantize_level.empty()) {
    img.set_quantize_level = 1;
    img.quantize_level = static_cast<float>(a.quantize_level[h]);
  }
  if (!a.quantize_method.empty()) img.quantize_method = static_cast<int>(a.quantize_method[h]);
  if (!a.dither_seed.empty()) {
    TORCH_CHECK_VALUE(a.dither_seed[h] >= 0 && a.dither_seed[h] <= 10000, "dither_seed[", h,
                      "] is ", a.dither_seed[h], "; it must be 0 (from the clock) to 10000");
    img.dither_seed = static_cast<int>(a.dither_seed[h]);
  }
  if (!a.hcomp_scale.empty()) {
    TORCH_CHECK_VALUE(std::isfinite(a.hcomp_scale[h]) && a.hcomp_scale[h] >= 0, "hcomp_scale[",
                      h, "] must be finite and >= 0");
    img.hcomp_scale = static_cast<float>(a.hcomp_scale[h]);
  }
}

// The column options of write_hdus, flattened over every table's columns
// (each list empty or one entry per column).
struct ColumnArgs {
  const std::vector<std::string>& names;
  const std::vector<at::Tensor>& columns;
  const c10::List<c10::optional<at::Tensor>>* offsets;  // may be null
  const std::vector<std::string>& kinds;
  const std::vector<std::string>& units;
  at::ArrayRef<double> tscal, tzero;
  at::IntArrayRef tnull, flags;
};

constexpr int64_t kHasTscal = 1, kHasTzero = 2, kHasTnull = 4;

// Columns first..first+n of a: tensors copied to contiguous CPU memory in
// host (two per column: values, offsets), descriptions in cols. Returns
// the row count.
int64_t prepare_columns(const ColumnArgs& a, size_t first, size_t n, std::vector<at::Tensor>& host,
                        std::vector<tf_write_column>& cols) {
  int64_t nrows = n ? -1 : 0;
  host.assign(2 * n, at::Tensor());
  cols.assign(n, tf_write_column{});
  for (size_t i = 0; i < n; i++) {
    const size_t c = first + i;
    const std::string& name = a.names[c];
    const at::Tensor& t = a.columns[c];
    tf_write_column& col = cols[i];
    std::memset(&col, 0, sizeof col);
    col.name = c_name(name, " column name");
    col.unit = a.units.empty() ? "" : c_name(a.units[c], " column unit");
    const std::string kind = a.kinds.empty() ? std::string() : a.kinds[c];
    TORCH_CHECK_VALUE(t.defined(), "column '", name, "' is undefined");
    c10::optional<at::Tensor> off;
    if (a.offsets && !a.offsets->empty()) off = a.offsets->get(c);
    if (off.has_value() && off->defined()) {
      TORCH_CHECK_VALUE(kind.empty() || kind == "P", "column '", name, "': kind '", kind,
                        "' with offsets");
      TORCH_CHECK_TYPE(off->scalar_type() == at::kLong && off->dim() == 1 && off->numel() >= 1,
                       "column '", name, "': offsets must be int64 [rows + 1]");
      TORCH_CHECK_VALUE(t.dim() == 1, "column '", name,
                        "': a variable-length column's values are 1-d (every row's, concatenated)");
      const int64_t rows = off->numel() - 1;
      if (nrows < 0) nrows = rows;
      TORCH_CHECK_VALUE(rows == nrows, "column '", name, "' has ", rows, " rows, column '",
                        a.names[first], "' ", nrows);
      col.kind = TF_WCOL_VARLEN;
      col.dtype = write_type(t.scalar_type(), c);
      host[2 * i] = t.detach().to(at::kCPU).contiguous();
      host[2 * i + 1] = off->detach().to(at::kCPU).contiguous();
      col.offsets = host[2 * i + 1].data_ptr<int64_t>();
    } else {
      TORCH_CHECK_VALUE(t.dim() >= 1 && t.dim() <= TF_MAX_DIMS - 1, "column '", name,
                        "' must be [rows, *cell] with at most ", TF_MAX_DIMS - 2, " cell axes");
      if (nrows < 0) nrows = t.size(0);
      TORCH_CHECK_VALUE(t.size(0) == nrows, "column '", name, "' has ", t.size(0),
                        " rows, column '", a.names[first], "' ", nrows);
      if (kind == "A") {
        TORCH_CHECK_TYPE(t.scalar_type() == at::kByte, "string column '", name,
                         "' must be uint8 [rows, width], not ", t.scalar_type());
        TORCH_CHECK_VALUE(t.dim() >= 2, "string column '", name, "' must be uint8 [rows, width]");
        col.kind = TF_WCOL_STRING;
        col.dtype = TF_W_UINT8;
        host[2 * i] = t.detach().to(at::kCPU).contiguous();
      } else if (t.scalar_type() == at::kBool) {
        TORCH_CHECK_VALUE(kind.empty() || kind == "L", "column '", name, "': kind '", kind, "'");
        col.kind = TF_WCOL_BOOL;
        col.dtype = TF_W_UINT8;
        host[2 * i] = t.detach().to(at::kCPU).to(at::kByte).contiguous();
      } else {
        TORCH_CHECK_VALUE(kind.empty(), "column '", name,
                          "': kind is \"\" (from the dtype) or \"A\" (uint8 strings), not '", kind,
                          "'");
        col.kind = TF_WCOL_NUMBER;
        col.dtype = write_type(t.scalar_type(), c);
        host[2 * i] = t.detach().to(at::kCPU).contiguous();
      }
      col.ndim = static_cast<int>(t.dim()) - 1;
      for (int d = 0; d < col.ndim; d++) col.shape[d] = t.size(d + 1);
    }
    col.data = host[2 * i].data_ptr();
    col.nbytes = static_cast<size_t>(host[2 * i].numel()) * host[2 * i].element_size();
    const int64_t fl = a.flags.empty() ? 0 : a.flags[c];
    col.has_tscal = (fl & kHasTscal) != 0;
    col.has_tzero = (fl & kHasTzero) != 0;
    col.has_tnull = (fl & kHasTnull) != 0;
    if (col.has_tscal) col.tscal = a.tscal[c];
    if (col.has_tzero) col.tzero = a.tzero[c];
    if (col.has_tnull) col.tnull = a.tnull[c];
  }
  return nrows;
}

// Header cards: checks that the four lists have `total` entries each.
void check_cards(size_t total, const std::vector<std::string>& keys,
                 const std::vector<std::string>& values, const std::vector<std::string>& comments,
                 const std::vector<std::string>& types) {
  TORCH_CHECK_VALUE(keys.size() == total && values.size() == total && comments.size() == total &&
                        types.size() == total,
                    "keys, values, comments and types need ", total,
                    " entries (the sum of ncards), got ", keys.size(), ", ", values.size(), ", ",
                    comments.size(), ", ", types.size());
}

size_t sum_counts(at::IntArrayRef counts, size_t n, const char* what) {
  TORCH_CHECK_VALUE(counts.size() == n, what, " has ", counts.size(), " entries for ", n, " HDUs");
  size_t total = 0;
  for (size_t h = 0; h < n; h++) {
    TORCH_CHECK_VALUE(counts[h] >= 0, what, "[", h, "] is negative");
    total += static_cast<size_t>(counts[h]);
  }
  return total;
}

}  // namespace

int64_t write(const std::string& path, const c10::List<c10::optional<at::Tensor>>& data,
              at::IntArrayRef ncards, const std::vector<std::string>& keys,
              const std::vector<std::string>& values, const std::vector<std::string>& comments,
              const std::vector<std::string>& types, bool overwrite, bool checksum,
              const c10::optional<std::vector<std::string>>& compress_opt, at::IntArrayRef tile,
              at::IntArrayRef tile_ndim, at::ArrayRef<double> quantize_level,
              at::IntArrayRef quantize_method, at::IntArrayRef dither_seed,
              at::ArrayRef<double> hcomp_scale, bool sync) {
  const size_t nhdu = data.size();
  // Every argument is checked before the core builds anything.
  const size_t total = sum_counts(ncards, nhdu, "ncards");
  check_cards(total, keys, values, comments, types);
  static const std::vector<std::string> no_codecs;
  CompressArgs ca{compress_opt ? *compress_opt : no_codecs, tile, tile_ndim, quantize_level,
                  quantize_method, dither_seed, hcomp_scale};
  check_compress(ca, nhdu);
  std::vector<tf_write_card> cards = header_cards(keys, values, comments, types);
  // CPU and contiguous copies where needed; kept alive until the commit.
  std::vector<at::Tensor> host(nhdu);
  std::vector<tf_write_image> images(nhdu);
  size_t tile_at = 0;
  for (size_t h = 0; h < nhdu; h++) prepare_image(data.get(h), h, ca, tile_at, host[h], images[h]);

  WriterHandle w = create_writer(path, overwrite, checksum, sync);
  size_t first = 0;
  for (size_t h = 0; h < nhdu; h++) {
    wcheck(tf_writer_add_image(w.get(), &images[h], total ? cards.data() + first : nullptr,
                               static_cast<int>(ncards[h])),
           w.get());
    first += static_cast<size_t>(ncards[h]);
  }
  int64_t bytes = 0;
  wcheck(tf_writer_commit(w.get(), &bytes), w.get());
  return bytes;
}

int64_t write_table(const std::string& path, const std::vector<std::string>& names,
                    const std::vector<at::Tensor>& columns, const std::vector<std::string>& kinds,
                    const std::vector<std::string>& units, const std::vector<std::string>& keys,
                    const std::vector<std::string>& values, const std::vector<std::string>& comments,
                    const std::vector<std::string>& types, bool overwrite, bool checksum,
                    bool sync) {
  const size_t ncols = columns.size();
  TORCH_CHECK_VALUE(names.size() == ncols, "names has ", names.size(), " entries for ", ncols,
                    " columns");
  TORCH_CHECK_VALUE(kinds.empty() || kinds.size() == ncols, "kinds has ", kinds.size(),
                    " entries: give none or one per column (", ncols, ")");
  TORCH_CHECK_VALUE(units.empty() || units.size() == ncols, "units has ", units.size(),
                    " entries: give none or one per column (", ncols, ")");
  const size_t total = keys.size();
  TORCH_CHECK_VALUE(values.size() == total && comments.size() == total && types.size() == total,
                    "keys, values, comments and types need the same length");
  std::vector<tf_write_card> cards = header_cards(keys, values, comments, types);
  ColumnArgs ca{names, columns, nullptr, kinds, units, {}, {}, {}, {}};
  std::vector<at::Tensor> host;
  std::vector<tf_write_column> cols;
  int64_t nrows = prepare_columns(ca, 0, ncols, host, cols);
  WriterHandle w = create_writer(path, overwrite, checksum, sync);
  wcheck(tf_writer_add_table(w.get(), nrows, cols.data(), static_cast<int>(ncols),
                             cards.data(), static_cast<int>(total)),
         w.get());
  int64_t bytes = 0;
  wcheck(tf_writer_commit(w.get(), &bytes), w.get());
  return bytes;
}

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
                   bool append, bool checksum, bool sync) {
  const size_t nhdu = hdu_kinds.size();
  TORCH_CHECK_VALUE(nhdu >= 1, "no HDU given");
  TORCH_CHECK_VALUE(images.size() == nhdu, "images has ", images.size(), " entries for ", nhdu,
                    " HDUs (None for a table)");
  const size_t total = sum_counts(ncards, nhdu, "ncards");
  check_cards(total, keys, values, comments, types);
  const size_t total_cols = sum_counts(ncols, nhdu, "ncols");
  auto per_col = [total_cols](size_t n, const char* what) {
    TORCH_CHECK_VALUE(n == 0 || n == total_cols, what, " has ", n,
                      " entries: give none or one per column (", total_cols, ")");
  };
  TORCH_CHECK_VALUE(names.size() == total_cols && columns.size() == total_cols, "names and columns need ",
                    total_cols, " entries (the sum of ncols), got ", names.size(), " and ",
                    columns.size());
  per_col(offsets.size(), "offsets");
  per_col(col_kinds.size(), "col_kinds");
  per_col(units.size(), "units");
  per_col(tscal.size(), "tscal");
  per_col(tzero.size(), "tzero");
  per_col(tnull.size(), "tnull");
  per_col(col_flags.size(), "col_flags");
  for (size_t c = 0; c < col_flags.size(); c++) {
    const int64_t fl = col_flags[c];
    TORCH_CHECK_VALUE(fl >= 0 && fl <= 7, "col_flags[", c, "] is ", fl, "; it is 0 to 7");
    TORCH_CHECK_VALUE(!(fl & kHasTscal) || !tscal.empty(), "col_flags[", c, "] sets TSCAL, tscal is empty");
    TORCH_CHECK_VALUE(!(fl & kHasTzero) || !tzero.empty(), "col_flags[", c, "] sets TZERO, tzero is empty");
    TORCH_CHECK_VALUE(!(fl & kHasTnull) || !tnull.empty(), "col_flags[", c, "] sets TNULL, tnull is empty");
  }
  CompressArgs ca{compress, tile, tile_ndim, quantize_level, quantize_method, dither_seed,
                  hcomp_scale};
  check_compress(ca, nhdu);
  ColumnArgs cola{names, columns, &offsets, col_kinds, units, tscal, tzero, tnull, col_flags};

  std::vector<tf_write_card> cards = header_cards(keys, values, comments, types);
  std::vector<at::Tensor> host(nhdu);
  std::vector<tf_write_image> imgs(nhdu);
  std::vector<std::vector<at::Tensor>> col_host(nhdu);
  std::vector<std::vector<tf_write_column>> cols(nhdu);
  std::vector<int64_t> nrows(nhdu, 0);
  size_t tile_at = 0, col_at = 0;
  for (size_t h = 0; h < nhdu; h++) {
    const std::string& k = hdu_kinds[h];
    if (k == "image") {
      TORCH_CHECK_VALUE(ncols[h] == 0, "HDU ", h, " is an image and has ncols ", ncols[h]);
      prepare_image(images.get(h), h, ca, tile_at, host[h], imgs[h]);
    } else if (k == "table") {
      c10::optional<at::Tensor> t = images.get(h);
      TORCH_CHECK_VALUE(!(t.has_value() && t->defined()), "HDU ", h,
                        " is a table: its entry in images is None");
      TORCH_CHECK_VALUE(compress.empty() || compress[h].empty(), "HDU ", h,
                        " is a table: compress is \"\"");
      TORCH_CHECK_VALUE(tile_ndim.empty() || tile_ndim[h] == 0, "HDU ", h,
                        " is a table: tile_ndim is 0");
      nrows[h] = prepare_columns(cola, col_at, static_cast<size_t>(ncols[h]), col_host[h], cols[h]);
    } else {
      TORCH_CHECK_VALUE(false, "hdu_kinds[", h, "] is '", k, "', not 'image' or 'table'");
    }
    col_at += static_cast<size_t>(ncols[h]);
  }

  WriterHandle w = create_writer(path, overwrite, checksum, sync, append);
  size_t first = 0;
  for (size_t h = 0; h < nhdu; h++) {
    const tf_write_card* c = total ? cards.data() + first : nullptr;
    const int n = static_cast<int>(ncards[h]);
    if (hdu_kinds[h] == "image")
      wcheck(tf_writer_add_image(w.get(), &imgs[h], c, n), w.get());
    else
      wcheck(tf_writer_add_table(w.get(), nrows[h], cols[h].data(),
                                 static_cast<int>(cols[h].size()), c, n),
             w.get());
    first += static_cast<size_t>(ncards[h]);
  }
  int64_t bytes = 0;
  wcheck(tf_writer_commit(w.get(), &bytes), w.get());
  return bytes;
}

std::tuple<std::vector<int64_t>, std::vector<int64_t>> verify_checksum(const std::string& path) {
  std::vector<int> ds(4096), hs(4096);
  int n = 0;
  char msg[1024];
  int rc = tf_verify_checksums(os_path(path).c_str(), &n, ds.data(), hs.data(),
                               static_cast<int>(ds.size()), msg, sizeof msg);
  if (rc != TF_OK) throw_status(rc, msg);
  if (n > static_cast<int>(ds.size())) {
    ds.resize(n);
    hs.resize(n);
    rc = tf_verify_checksums(os_path(path).c_str(), &n, ds.data(), hs.data(), n, msg, sizeof msg);
    if (rc != TF_OK) throw_status(rc, msg);
  }
  std::vector<int64_t> d(ds.begin(), ds.begin() + n), h(hs.begin(), hs.begin() + n);
  return {d, h};
}

}  // namespace torchfits
