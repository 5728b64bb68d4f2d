// image_ops.cpp - kernels of read, read_cutout and _read_cfitsio: ask the
// core for the output's shape and dtype, allocate, let the core fill it.
#include <ATen/Parallel.h>

#include "ops.h"
#include "shim.h"

namespace torchfits {
namespace {

at::Tensor read_image(tf_file* f, int hdu, tf_image_request* req) {
  tf_dtype dtype = TF_DTYPE_AUTO;
  int ndim = 0;
  int64_t shape[TF_MAX_DIMS];
  check(tf_image_output(f, hdu, req, &dtype, &ndim, shape), f);
  tf_dtype request = dtype;
  at::ScalarType scalar = to_scalar_type(dtype, &request);
  req->dtype = request;
  at::Tensor out = new_output(f, hdu, "the image", at::IntArrayRef(shape, ndim), scalar);
  check(tf_image_read(f, hdu, req, out.data_ptr(), out.nbytes()), f);
  return out;
}

at::Tensor cutout(tf_file* f, int hdu, at::IntArrayRef start, at::IntArrayRef shape,
                  at::OptionalIntArrayRef step, bool raw, tf_read_path path) {
  tf_image_request req{};
  req.raw = raw;
  req.path = path;
  set_region(&req, start, shape, step);
  return read_image(f, hdu, &req);
}

}  // namespace

at::Tensor read_open(tf_file* f, int64_t hdu, bool raw) {
  tf_image_request req{};
  req.raw = raw;
  return read_image(f, hdu_index(hdu), &req);
}

at::Tensor read_cutout_open(tf_file* f, int64_t hdu, at::IntArrayRef start, at::IntArrayRef shape,
                            at::OptionalIntArrayRef step, bool raw) {
  return cutout(f, hdu_index(hdu), start, shape, step, raw, TF_PATH_AUTO);
}

at::Tensor read_cutouts_open(tf_file* f, int64_t hdu_arg, at::IntArrayRef starts,
                             at::IntArrayRef shape, bool raw) {
  const size_t ndim = shape.size();
  TORCH_CHECK_VALUE(ndim >= 1 && starts.size() % ndim == 0, "starts has ", starts.size(),
                    " entries, not a multiple of the ", ndim, " axes of shape");
  const int64_t n = static_cast<int64_t>(starts.size() / ndim);
  const int hdu = hdu_index(hdu_arg);
  // The first region (or the origin, for none) sizes the output and picks
  // its dtype; every region has that shape, so each fills one slice.
  std::vector<int64_t> origin(ndim, 0);
  tf_image_request req{};
  req.raw = raw;
  set_region(&req, n ? starts.slice(0, ndim) : at::IntArrayRef(origin), shape, c10::nullopt);
  tf_dtype dtype = TF_DTYPE_AUTO;
  int rdim = 0;
  int64_t rshape[TF_MAX_DIMS];
  check(tf_image_output(f, hdu, &req, &dtype, &rdim, rshape), f);
  tf_dtype request = dtype;
  at::ScalarType scalar = to_scalar_type(dtype, &request);
  std::vector<int64_t> oshape{n};
  oshape.insert(oshape.end(), rshape, rshape + rdim);
  at::Tensor out = new_output(f, hdu, "the cutouts", oshape, scalar);
  const size_t each = n ? out.nbytes() / static_cast<size_t>(n) : 0;
  char* dst = static_cast<char*>(out.data_ptr());
  for (int64_t i = 0; i < n; i++) {
    set_region(&req, starts.slice(static_cast<size_t>(i) * ndim, ndim), shape, c10::nullopt);
    req.dtype = request;
    check(tf_image_read(f, hdu, &req, dst + static_cast<size_t>(i) * each, each), f);
  }
  return out;
}

at::Tensor read(const std::string& path, int64_t hdu, bool raw) {
  return with_file(path, [&](tf_file* h) {
    return read_open(h, hdu, raw);
  });
}

at::Tensor read_name(const std::string& path, const std::string& hdu, int64_t extver, bool raw) {
  return with_file(path, [&](tf_file* h) {
    tf_image_request req{};
    req.raw = raw;
    return read_image(h, find_hdu(h, hdu, extver), &req);
  });
}

at::Tensor read_cutout(const std::string& path, int64_t hdu, at::IntArrayRef start,
                       at::IntArrayRef shape, at::OptionalIntArrayRef step, bool raw) {
  return with_file(path, [&](tf_file* h) {
    return read_cutout_open(h, hdu, start, shape, step, raw);
  });
}

at::Tensor read_cutout_name(const std::string& path, const std::string& hdu, int64_t extver,
                            at::IntArrayRef start, at::IntArrayRef shape,
                            at::OptionalIntArrayRef step, bool raw) {
  return with_file(path, [&](tf_file* h) {
    return cutout(h, find_hdu(h, hdu, extver), start, shape, step, raw, TF_PATH_AUTO);
  });
}

at::Tensor read_cfitsio(const std::string& path, int64_t hdu, at::IntArrayRef start,
                        at::IntArrayRef shape, at::OptionalIntArrayRef step, bool raw) {
  return with_file(path, [&](tf_file* h) {
    if (start.empty() && shape.empty()) {
      tf_image_request req{};
      req.raw = raw;
      req.path = TF_PATH_CFITSIO;
      return read_image(h, hdu_index(hdu), &req);
    }
    return cutout(h, hdu_index(hdu), start, shape, step, raw, TF_PATH_CFITSIO);
  });
}

}  // namespace torchfits
