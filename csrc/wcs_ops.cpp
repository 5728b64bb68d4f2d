// wcs_ops.cpp - kernels of the sky-coordinate ops (the core's wcs/).
#include "ops.h"
#include "shim.h"

#include <cmath>

namespace torchfits {
namespace {

struct WcsFree {
  void operator()(tf_wcs* w) const { tf_wcs_free(w); }
};
using WcsHandle = std::unique_ptr<tf_wcs, WcsFree>;

WcsHandle load(tf_file* f, int64_t hdu, const std::string& alt) {
  tf_wcs* w = nullptr;
  check(tf_wcs_load(f, hdu_index(hdu), c_name(alt, "alt"), &w), f);
  return WcsHandle(w);
}

at::Tensor transform(const std::string& path, int64_t hdu, const at::Tensor& in,
                     const std::string& alt, bool wcslib, int to_world, const char* what) {
  TORCH_CHECK_TYPE(in.scalar_type() == at::kDouble, what, " must be float64, not ",
                   in.scalar_type());
  TORCH_CHECK_VALUE(in.dim() == 2, what, " must be [N, naxis], not of shape ", in.sizes());
  return with_file(path, [&](tf_file* h) {
    WcsHandle w = load(h, hdu, alt);
    int nax = tf_wcs_naxis(w.get());
    TORCH_CHECK_VALUE(in.size(1) == nax, what, " has ", in.size(1),
                      " columns; the WCS of this HDU has ", nax, " axes");
    at::Tensor src = in.contiguous();
    at::Tensor out = at::empty(in.sizes(), in.options().memory_format(at::MemoryFormat::Contiguous));
    check(tf_wcs_transform(h, w.get(), to_world, src.data_ptr<double>(),
                           out.data_ptr<double>(), in.size(0), 0,
                           wcslib ? TF_WCS_WCSLIB : 0),
          h);
    return out;
  });
}

}  // namespace

at::Tensor world_to_pixel(const std::string& path, int64_t hdu, const at::Tensor& world,
                          const std::string& alt, bool wcslib) {
  return transform(path, hdu, world, alt, wcslib, 0, "world");
}

at::Tensor pixel_to_world(const std::string& path, int64_t hdu, const at::Tensor& pixel,
                          const std::string& alt, bool wcslib) {
  return transform(path, hdu, pixel, alt, wcslib, 1, "pixel");
}

WcsInfo wcs_info(const std::string& path, int64_t hdu, const std::string& alt) {
  return with_file(path, [&](tf_file* h) -> WcsInfo {
    WcsHandle w = load(h, hdu, alt);
    int nax = tf_wcs_naxis(w.get());
    std::vector<std::string> ctype, cunit;
    std::vector<double> crval, crpix, scale;
    for (int i = 0; i < nax; i++) {
      const char *t, *u;
      double v, p, s;
      tf_wcs_axis(w.get(), i, &t, &u, &v, &p, &s);
      ctype.emplace_back(t);
      cunit.emplace_back(u);
      crval.push_back(v);
      crpix.push_back(p);
      scale.push_back(s);
    }
    int n = 0;
    int64_t naxisn[TF_MAX_DIMS];
    tf_wcs_image_shape(w.get(), &n, naxisn);
    std::vector<int64_t> shape(naxisn, naxisn + n);
    // The centres of the four corner pixels of the first two axes, in the
    // order of astropy's calc_footprint: (0,0), (0,n2-1), (n1-1,n2-1),
    // (n1-1,0); other axes at pixel 0. Empty for an HDU without an image
    // of at least two axes matching the WCS.
    at::Tensor corners = at::empty({0, nax}, at::kDouble);
    if (n >= 2 && nax >= 2 && n == nax) {
      at::Tensor pix = at::zeros({4, nax}, at::kDouble);
      double* p = pix.data_ptr<double>();
      double x = static_cast<double>(naxisn[0] - 1), y = static_cast<double>(naxisn[1] - 1);
      double xs[4] = {0, 0, x, x}, ys[4] = {0, y, y, 0};
      for (int k = 0; k < 4; k++) {
        p[k * nax] = xs[k];
        p[k * nax + 1] = ys[k];
      }
      corners = at::empty({4, nax}, at::kDouble);
      check(tf_wcs_transform(h, w.get(), 1, p, corners.data_ptr<double>(), 4, 1, 0),
            h);
    }
    return {ctype, cunit, crval, crpix, scale, shape, corners};
  });
}

}  // namespace torchfits
