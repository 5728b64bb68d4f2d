// header_ops.cpp - kernels of the header and metadata ops.
#include "ops.h"
#include "shim.h"

#include <cstring>

namespace torchfits {
namespace {

// One entry per keyword: the first card wins, as cfitsio's and astropy's
// lookups do; COMMENT and HISTORY cards are joined with newlines.
c10::Dict<std::string, std::string> header_dict(tf_file* f, int hdu) {
  int n = 0;
  check(tf_header_load(f, hdu, &n), f);
  c10::Dict<std::string, std::string> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) {
    const char *key, *value, *comment;
    char type;
    tf_header_card(f, i, &key, &value, &comment, &type);
    if (type == TF_CARD_COMMENTARY &&
        (std::strcmp(key, "COMMENT") == 0 || std::strcmp(key, "HISTORY") == 0)) {
      auto it = out.find(key);
      if (it != out.end()) {
        out.insert_or_assign(key, it->value() + "\n" + value);
        continue;
      }
    }
    out.insert(key, value);  // keeps an existing entry
  }
  return out;
}

const char* kind_name(const tf_hdu_info& info) {
  switch (info.kind) {
    case TF_HDU_ASCII_TABLE: return "ascii_table";
    case TF_HDU_BINARY_TABLE: return "binary_table";
    default: return "image";
  }
}

}  // namespace

c10::Dict<std::string, std::string> read_header(const std::string& path, int64_t hdu) {
  return with_file(path, [&](tf_file* h) {
    return header_dict(h, hdu_index(hdu));
  });
}

c10::Dict<std::string, std::string> read_header_name(const std::string& path,
                                                     const std::string& hdu, int64_t extver) {
  return with_file(path, [&](tf_file* h) {
    return header_dict(h, find_hdu(h, hdu, extver));
  });
}

std::tuple<std::vector<std::string>, std::vector<std::string>, std::vector<std::string>,
           std::vector<std::string>>
read_header_cards(const std::string& path, int64_t hdu) {
  using Cards = std::tuple<std::vector<std::string>, std::vector<std::string>,
                           std::vector<std::string>, std::vector<std::string>>;
  return with_file(path, [&](tf_file* h) -> Cards {
    int n = 0;
    check(tf_header_load(h, hdu_index(hdu), &n), h);
    std::vector<std::string> keys, values, comments, types;
    keys.reserve(n);
    values.reserve(n);
    comments.reserve(n);
    types.reserve(n);
    for (int i = 0; i < n; i++) {
      const char *key, *value, *comment;
      char type;
      tf_header_card(h, i, &key, &value, &comment, &type);
      keys.emplace_back(key);
      values.emplace_back(value);
      comments.emplace_back(comment);
      types.emplace_back(1, type);
    }
    return {keys, values, comments, types};
  });
}

int64_t num_hdus(const std::string& path) {
  return with_file(path, [&](tf_file* h) {
    int n = 0;
    check(tf_num_hdus(h, &n), h);
    return n;
  });
}

int64_t find_hdu_op(const std::string& path, const std::string& extname, int64_t extver) {
  return with_file(path, [&](tf_file* h) {
    return find_hdu(h, extname, extver);
  });
}

InfoTuple info(const std::string& path) {
  return with_file(path, [&](tf_file* h) {
    return info_open(h);
  });
}

InfoTuple info_open(tf_file* f) {
  int n = 0;
  check(tf_num_hdus(f, &n), f);
  std::vector<std::string> kinds, dtypes, extnames;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<int64_t> extvers, bitpix;
  c10::List<bool> compressed;
  for (int i = 0; i < n; i++) {
    tf_hdu_info h;
    int rc = tf_hdu_info_get(f, i, &h);
    if (rc == TF_EUNSUPPORTED) {
      // Valid FITS this reader does not read (random groups, more than 16
      // axes): listed, with what the core could tell; reading it raises.
      kinds.emplace_back("unsupported");
      shapes.emplace_back();
      dtypes.emplace_back("");
      extnames.emplace_back(h.extname);
      extvers.push_back(h.extver);
      bitpix.push_back(h.bitpix);
      compressed.push_back(false);
      continue;
    }
    check(rc, f);
    kinds.emplace_back(kind_name(h));
    if (h.kind == TF_HDU_IMAGE) {
      shapes.emplace_back(h.shape, h.shape + h.ndim);
      tf_dtype request;
      to_scalar_type(h.dtype, &request);  // the dtype a read returns here
      dtypes.emplace_back(tf_dtype_name(request));
    } else {
      shapes.push_back({h.nrows});
      dtypes.emplace_back("");
    }
    extnames.emplace_back(h.extname);
    extvers.push_back(h.extver);
    bitpix.push_back(h.bitpix);
    compressed.push_back(h.compressed != 0);
  }
  return {kinds, shapes, dtypes, extnames, extvers, bitpix, compressed};
}

}  // namespace torchfits
