// data_ops.cpp - kernels for data loading: reads into a tensor the caller
// gives (a pinned buffer, a slice of a batch), and batch reads of the same
// HDU or region from many files, which the core spreads over threads.
#include <algorithm>
#include <string>
#include <vector>

#include "ops.h"
#include "shim.h"

namespace torchfits {
namespace {

// `out` must be a CPU, C-contiguous tensor of exactly `scalar` and `shape`
// (after a leading batch axis of `batch` entries when batch >= 0).
void check_out(const at::Tensor& out, const std::string& what, at::ScalarType scalar,
               at::IntArrayRef shape, int64_t batch) {
  TORCH_CHECK_VALUE(out.device().is_cpu(), what, ": out must be a CPU tensor (pinned memory is "
                    "fine), got one on ", out.device());
  TORCH_CHECK_VALUE(out.is_contiguous(), what, ": out must be contiguous");
  TORCH_CHECK_TYPE(out.scalar_type() == scalar, what, ": out has dtype ", out.scalar_type(),
                   " but the data reads as ", scalar);
  std::vector<int64_t> want;
  if (batch >= 0) want.push_back(batch);
  want.insert(want.end(), shape.begin(), shape.end());
  TORCH_CHECK_VALUE(out.sizes() == at::IntArrayRef(want), what, ": out has shape ", out.sizes(),
                    " but the read gives ", at::IntArrayRef(want));
}

// Ask the core what the read gives, check `out` against it, read into it.
at::Tensor image_into(const std::string& path, int64_t hdu, tf_image_request* req,
                      at::Tensor& out) {
  return with_file(path, [&](tf_file* h) {
    int index = hdu_index(hdu);
    tf_dtype dtype = TF_DTYPE_AUTO;
    int ndim = 0;
    int64_t shape[TF_MAX_DIMS];
    check(tf_image_output(h, index, req, &dtype, &ndim, shape), h);
    at::ScalarType scalar = to_scalar_type(dtype, &req->dtype);
    check_out(out, path + ": HDU " + std::to_string(hdu), scalar, at::IntArrayRef(shape, ndim), -1);
    check(tf_image_read(h, index, req, out.data_ptr(), out.nbytes()), h);
    return out;
  });
}

// What a batch read gives: the first readable file's dtype and shape.
struct BatchPlan {
  std::vector<std::string> names;  // the files' names (os_path)
  std::vector<const char*> paths;
  tf_image_request req;
  tf_dtype dtype = TF_DTYPE_AUTO;
  int ndim = 0;
  int64_t shape[TF_MAX_DIMS];
  at::ScalarType scalar;
};

// Room for the message of a batch: a path of any length, whole, and its
// cause.
std::vector<char> message_buffer(const std::vector<std::string>& names) {
  size_t longest = 0;
  for (const auto& name : names) longest = std::max(longest, name.size());
  return std::vector<char>(longest + 4096, '\0');
}

BatchPlan plan_batch(const std::vector<std::string>& paths, int64_t hdu,
                     const tf_image_request& req, bool skip_errors) {
  TORCH_CHECK_VALUE(!paths.empty(), "a batch read needs at least one file");
  BatchPlan p;
  p.req = req;
  for (const auto& path : paths) p.names.push_back(os_path(path));
  for (const auto& name : p.names) p.paths.push_back(name.c_str());
  std::vector<char> msg = message_buffer(p.names);
  int rc = tf_batch_output(p.paths.data(), static_cast<int64_t>(p.paths.size()), hdu_index(hdu),
                           &p.req, skip_errors, &p.dtype, &p.ndim, p.shape, msg.data(), msg.size());
  if (rc != TF_OK) throw_status(rc, msg.data());
  p.scalar = to_scalar_type(p.dtype, &p.req.dtype);
  return p;
}

// Read the files into `out` (n x the plan's shape); returns the per-file
// success mask (all true unless skip_errors).
at::Tensor run_batch(const BatchPlan& p, int64_t hdu, at::Tensor& out, bool skip_errors,
                     int64_t threads) {
  at::Tensor ok = at::ones({static_cast<int64_t>(p.paths.size())}, at::kBool);
  std::vector<char> msg = message_buffer(p.names);
  int rc = tf_batch_read(p.paths.data(), static_cast<int64_t>(p.paths.size()), hdu_index(hdu),
                         &p.req, p.req.dtype, p.ndim, p.shape, out.data_ptr(), out.nbytes(),
                         static_cast<int>(std::min<int64_t>(std::max<int64_t>(threads, 0), 64)),
                         skip_errors ? static_cast<uint8_t*>(ok.data_ptr()) : nullptr, msg.data(),
                         msg.size());
  if (rc != TF_OK) throw_status(rc, msg.data());
  return ok;
}

}  // namespace

void read_into(const std::string& path, int64_t hdu, at::Tensor& out, bool raw) {
  tf_image_request req{};
  req.raw = raw;
  image_into(path, hdu, &req, out);
}

void read_cutout_into(const std::string& path, int64_t hdu, at::IntArrayRef start,
                            at::Tensor& out, at::OptionalIntArrayRef step, bool raw) {
  tf_image_request req{};
  req.raw = raw;
  TORCH_CHECK_VALUE(start.size() == static_cast<size_t>(out.dim()), path, ": HDU ", hdu,
                    ": start has ", start.size(), " entries but out has shape ", out.sizes());
  set_region(&req, start, out.sizes(), step);
  image_into(path, hdu, &req, out);
}

std::tuple<at::Tensor, at::Tensor> read_batch(const std::vector<std::string>& paths, int64_t hdu,
                                              at::OptionalIntArrayRef start,
                                              at::OptionalIntArrayRef shape,
                                              at::OptionalIntArrayRef step, bool raw,
                                              bool skip_errors, int64_t threads) {
  tf_image_request req{};
  req.raw = raw;
  TORCH_CHECK_VALUE(start.has_value() == shape.has_value(),
                    "give both start and shape for a cutout, or neither for whole images");
  if (start.has_value()) set_region(&req, *start, *shape, step);
  else TORCH_CHECK_VALUE(!step.has_value(), "step needs start and shape");
  BatchPlan p = plan_batch(paths, hdu, req, skip_errors);
  std::vector<int64_t> out_shape{static_cast<int64_t>(paths.size())};
  out_shape.insert(out_shape.end(), p.shape, p.shape + p.ndim);
  at::Tensor out;
  try {
    out = at::empty(out_shape, at::TensorOptions().dtype(p.scalar));
  } catch (const c10::Error& err) {
    // Name the files, as every other failure does.
    std::string cause = err.what_without_backtrace();
    cause = cause.substr(0, cause.find('\n'));
    double bytes = static_cast<double>(c10::elementSize(p.scalar));
    for (int64_t n : out_shape) bytes *= static_cast<double>(n);
    std::string msg = os_path(paths[0]);
    if (paths.size() > 1) msg += " and " + std::to_string(paths.size() - 1) + " more files";
    msg += ": cannot allocate " + std::to_string(static_cast<long long>(bytes)) +
           " bytes for the batch (" + cause + ")";
    throw_status(TF_ENOMEM, msg.c_str());
  }
  at::Tensor ok = run_batch(p, hdu, out, skip_errors, threads);
  return {out, ok};
}

at::Tensor read_batch_into(const std::vector<std::string>& paths, int64_t hdu, at::Tensor& out,
                           at::OptionalIntArrayRef start, at::OptionalIntArrayRef step, bool raw,
                           bool skip_errors, int64_t threads) {
  TORCH_CHECK_VALUE(out.dim() >= 2 && out.dim() <= TF_MAX_DIMS + 1,
                    "read_batch_into: out must have a batch axis then the image's axes, got "
                    "shape ", out.sizes());
  tf_image_request req{};
  req.raw = raw;
  if (start.has_value()) set_region(&req, *start, out.sizes().slice(1), step);
  else TORCH_CHECK_VALUE(!step.has_value(), "step needs start");
  BatchPlan p = plan_batch(paths, hdu, req, skip_errors);
  check_out(out, "read_batch_into", p.scalar, at::IntArrayRef(p.shape, p.ndim),
            static_cast<int64_t>(paths.size()));
  return run_batch(p, hdu, out, skip_errors, threads);
}

at::Tensor read_cutouts(const std::vector<std::string>& paths, at::IntArrayRef hdus,
                        const at::Tensor& items, at::IntArrayRef shape, double fill,
                        c10::optional<at::ScalarType> dtype, int64_t threads) {
  at::ScalarType scalar = dtype.value_or(at::kFloat);
  TORCH_CHECK_TYPE(scalar == at::kFloat || scalar == at::kDouble,
                   "read_cutouts: dtype must be float32 or float64, not ", scalar);
  TORCH_CHECK_VALUE(hdus.size() == paths.size(), "read_cutouts: ", paths.size(), " paths but ",
                    hdus.size(), " hdus");
  TORCH_CHECK_TYPE(items.scalar_type() == at::kLong, "read_cutouts: items must be int64, not ",
                   items.scalar_type());
  TORCH_CHECK_VALUE(items.dim() == 2 && items.size(1) == 3,
                    "read_cutouts: items must be [n, 3] (file, y, x), not of shape ", items.sizes());
  TORCH_CHECK_VALUE(shape.size() == 2 && shape[0] >= 1 && shape[1] >= 1,
                    "read_cutouts: shape must be two positive sizes (ny, nx), not ", shape);
  std::vector<std::string> names;
  std::vector<const char*> cpaths;
  std::vector<int> chdus;
  for (const auto& path : paths) names.push_back(os_path(path));
  for (size_t i = 0; i < names.size(); i++) {
    cpaths.push_back(names[i].c_str());
    chdus.push_back(hdu_index(hdus[i]));
  }
  at::Tensor it = items.contiguous();
  int64_t n = it.size(0);
  at::Tensor out = at::empty({n, shape[0], shape[1]}, at::TensorOptions().dtype(scalar));
  std::vector<char> msg = message_buffer(names);
  int rc = tf_cutouts_read(cpaths.data(), chdus.data(), static_cast<int64_t>(cpaths.size()),
                           it.data_ptr<int64_t>(), n, shape[0], shape[1],
                           scalar == at::kFloat ? TF_FLOAT32 : TF_FLOAT64, fill, out.data_ptr(),
                           out.nbytes(),
                           static_cast<int>(std::min<int64_t>(std::max<int64_t>(threads, 0), 64)),
                           msg.data(), msg.size());
  if (rc != TF_OK) throw_status(rc, msg.data());
  return out;
}

}  // namespace torchfits
