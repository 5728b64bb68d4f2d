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
WriterHandle create_writer(const std::string& path, bool overwrite, bool checksum) {
  tf_writer* raw = nullptr;
  int rc = tf_writer_create(&raw, os_path(path).c_str(), overwrite ? 1 : 0);
  WriterHandle w(raw);
  TORCH_CHECK(w, "out of memory");
  wcheck(rc, w.get());
  wcheck(tf_writer_set_checksum(w.get(), checksum ? 1 : 0), w.get());
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

int64_t write(const std::string& path, const c10::List<c10::optional<at::Tensor>>& data,
              at::IntArrayRef ncards, const std::vector<std::string>& keys,
              const std::vector<std::string>& values, const std::vector<std::string>& comments,
              const std::vector<std::string>& types, bool overwrite, bool checksum,
              const c10::optional<std::vector<std::string>>& compress_opt, at::IntArrayRef tile,
              at::IntArrayRef tile_ndim, at::ArrayRef<double> quantize_level,
              at::IntArrayRef quantize_method, at::IntArrayRef dither_seed,
              at::ArrayRef<double> hcomp_scale) {
  const size_t nhdu = data.size();
  // Every argument is checked before the core builds anything.
  TORCH_CHECK_VALUE(ncards.size() == nhdu, "ncards has ", ncards.size(), " entries for ", nhdu,
                    " HDUs");
  size_t total = 0;
  for (size_t h = 0; h < nhdu; h++) {
    TORCH_CHECK_VALUE(ncards[h] >= 0, "ncards[", h, "] is negative");
    total += static_cast<size_t>(ncards[h]);
  }
  TORCH_CHECK_VALUE(keys.size() == total && values.size() == total && comments.size() == total &&
                        types.size() == total,
                    "keys, values, comments and types need ", total,
                    " entries (the sum of ncards), got ", keys.size(), ", ", values.size(), ", ",
                    comments.size(), ", ", types.size());
  auto per_hdu = [nhdu](size_t n, const char* what) {
    TORCH_CHECK_VALUE(n == 0 || n == nhdu, what, " has ", n, " entries: give none or one per HDU (",
                      nhdu, ")");
  };
  static const std::vector<std::string> no_codecs;
  const std::vector<std::string>& compress = compress_opt ? *compress_opt : no_codecs;
  per_hdu(compress.size(), "compress");
  per_hdu(tile_ndim.size(), "tile_ndim");
  {
    int64_t want = 0;
    for (int64_t k : tile_ndim) {
      TORCH_CHECK_VALUE(k >= 0 && k <= TF_MAX_DIMS, "tile_ndim has an entry of ", k);
      want += k;
    }
    TORCH_CHECK_VALUE(static_cast<int64_t>(tile.size()) == want, "tile has ", tile.size(),
                      " entries, tile_ndim adds up to ", want);
  }
  size_t tile_at = 0;
  per_hdu(quantize_level.size(), "quantize_level");
  per_hdu(quantize_method.size(), "quantize_method");
  per_hdu(dither_seed.size(), "dither_seed");
  per_hdu(hcomp_scale.size(), "hcomp_scale");

  std::vector<tf_write_card> cards = header_cards(keys, values, comments, types);
  // CPU and contiguous copies where needed; kept alive until the commit.
  std::vector<at::Tensor> host(nhdu);
  std::vector<tf_write_image> images(nhdu);
  for (size_t h = 0; h < nhdu; h++) {
    tf_write_image& img = images[h];
    std::memset(&img, 0, sizeof img);
    c10::optional<at::Tensor> t = data.get(h);
    if (t.has_value() && t->defined()) {
      img.dtype = write_type(t->scalar_type(), h);
      TORCH_CHECK_VALUE(t->dim() <= TF_MAX_DIMS, "data[", h, "] has ", t->dim(),
                        " axes; an image has at most ", TF_MAX_DIMS);
      TORCH_CHECK_VALUE(t->dim() >= 1, "data[", h,
                        "] is a 0-d tensor; give None for an HDU without data");
      host[h] = t->detach().to(at::kCPU).contiguous();
      img.ndim = static_cast<int>(host[h].dim());
      for (int d = 0; d < img.ndim; d++) img.shape[d] = host[h].size(d);
      img.data = host[h].data_ptr();
      img.nbytes = static_cast<size_t>(host[h].numel()) * host[h].element_size();
    } else {
      img.dtype = TF_W_UINT8;
    }
    if (!compress.empty()) img.codec = codec_of(compress[h], h);
    if (!tile_ndim.empty()) {
      img.tile_ndim = static_cast<int>(tile_ndim[h]);
      for (int d = 0; d < img.tile_ndim; d++) img.tile[d] = tile[tile_at++];
    }
    if (!quantize_level.empty()) {
      img.set_quantize_level = 1;
      img.quantize_level = static_cast<float>(quantize_level[h]);
    }
    if (!quantize_method.empty()) img.quantize_method = static_cast<int>(quantize_method[h]);
    if (!dither_seed.empty()) {
      TORCH_CHECK_VALUE(dither_seed[h] >= 0 && dither_seed[h] <= 10000, "dither_seed[", h, "] is ",
                        dither_seed[h], "; it must be 0 (from the clock) to 10000");
      img.dither_seed = static_cast<int>(dither_seed[h]);
    }
    if (!hcomp_scale.empty()) {
      TORCH_CHECK_VALUE(std::isfinite(hcomp_scale[h]) && hcomp_scale[h] >= 0, "hcomp_scale[", h,
                        "] must be finite and >= 0");
      img.hcomp_scale = static_cast<float>(hcomp_scale[h]);
    }
  }

  WriterHandle w = create_writer(path, overwrite, checksum);
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
                    const std::vector<std::string>& types, bool overwrite, bool checksum) {
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
  int64_t nrows = ncols ? -1 : 0;
  std::vector<at::Tensor> host(ncols);
  std::vector<tf_write_column> cols(ncols);
  for (size_t c = 0; c < ncols; c++) {
    const std::string& name = names[c];
    const at::Tensor& t = columns[c];
    TORCH_CHECK_VALUE(t.defined(), "column '", name, "' is undefined");
    TORCH_CHECK_VALUE(t.dim() >= 1 && t.dim() <= TF_MAX_DIMS - 1, "column '", name,
                      "' must be [rows, *cell] with at most ", TF_MAX_DIMS - 2, " cell axes");
    if (nrows < 0) nrows = t.size(0);
    TORCH_CHECK_VALUE(t.size(0) == nrows, "column '", name, "' has ", t.size(0), " rows, column '",
                      names[0], "' ", nrows);
    tf_write_column& col = cols[c];
    std::memset(&col, 0, sizeof col);
    col.name = c_name(name, " column name");
    col.unit = units.empty() ? "" : c_name(units[c], " column unit");
    const std::string kind = kinds.empty() ? std::string() : kinds[c];
    if (kind == "A") {
      TORCH_CHECK_TYPE(t.scalar_type() == at::kByte, "string column '", name,
                       "' must be uint8 [rows, width], not ", t.scalar_type());
      TORCH_CHECK_VALUE(t.dim() >= 2, "string column '", name, "' must be uint8 [rows, width]");
      col.kind = TF_WCOL_STRING;
      col.dtype = TF_W_UINT8;
      host[c] = t.detach().to(at::kCPU).contiguous();
    } else if (t.scalar_type() == at::kBool) {
      TORCH_CHECK_VALUE(kind.empty() || kind == "L", "column '", name, "': kind '", kind, "'");
      col.kind = TF_WCOL_BOOL;
      col.dtype = TF_W_UINT8;
      host[c] = t.detach().to(at::kCPU).to(at::kByte).contiguous();
    } else {
      TORCH_CHECK_VALUE(kind.empty(), "column '", name, "': kind is \"\" (from the dtype) or \"A\" (uint8 strings), not '", kind, "'");
      col.kind = TF_WCOL_NUMBER;
      col.dtype = write_type(t.scalar_type(), c);
      host[c] = t.detach().to(at::kCPU).contiguous();
    }
    col.ndim = static_cast<int>(t.dim()) - 1;
    for (int d = 0; d < col.ndim; d++) col.shape[d] = t.size(d + 1);
    col.data = host[c].data_ptr();
    col.nbytes = static_cast<size_t>(host[c].numel()) * host[c].element_size();
  }
  WriterHandle w = create_writer(path, overwrite, checksum);
  wcheck(tf_writer_add_table(w.get(), nrows, cols.data(), static_cast<int>(ncols),
                             cards.data(), static_cast<int>(total)),
         w.get());
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
