#pragma once

// An independent reference for the tests, written from the formulas of the BitTorch spec
// with element loops in double precision. It shares no code with the library.

#include <c10/util/Float8_e4m3fn.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace bittorch::testing {

struct ReferenceTernary {
  torch::Tensor codes;  // double, values in {-1, 0, 1}
  torch::Tensor scale;  // double, [rows] per channel or [1] global
};

/// max:     scale = max|w|, code = sign(w) if |w| > threshold_factor * scale else 0
/// absmean: scale = mean|w|, code = clamp(round_half_even(w / scale), -1, 1)
/// Scales are floored at 1e-8. Scales are rounded to `scale_dtype` before use, as the
/// library keeps them in that dtype.
inline ReferenceTernary reference_ternarize(const torch::Tensor& weight, double threshold_factor, bool per_channel,
                                            bool absmean, torch::Dtype scale_dtype) {
  const auto w = weight.to(torch::kDouble).contiguous();
  const int64_t rows = w.size(0), cols = w.size(1);
  const auto acc = w.accessor<double, 2>();
  const int64_t groups = per_channel ? rows : 1;
  const int64_t rows_per_group = per_channel ? 1 : rows;
  std::vector<double> scales(groups);
  for (int64_t g = 0; g < groups; ++g) {
    double max_abs = 0.0, sum_abs = 0.0;
    for (int64_t r = g * rows_per_group; r < (g + 1) * rows_per_group; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        max_abs = std::max(max_abs, std::abs(acc[r][c]));
        sum_abs += std::abs(acc[r][c]);
      }
    }
    const double raw = absmean ? sum_abs / static_cast<double>(rows_per_group * cols) : max_abs;
    scales[g] = std::max(raw, 1e-8);
  }
  auto scale = torch::tensor(scales, torch::kDouble).to(scale_dtype).to(torch::kDouble);
  const auto scale_acc = scale.accessor<double, 1>();
  auto codes = torch::zeros({rows, cols}, torch::kDouble);
  auto codes_acc = codes.accessor<double, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    // The library divides and compares in the scale dtype; do the same rounding here.
    const double s = scale_acc[per_channel ? r : 0];
    for (int64_t c = 0; c < cols; ++c) {
      const double v = acc[r][c];
      if (absmean) {
        const double q = std::nearbyint(v / s);  // round half to even
        codes_acc[r][c] = std::clamp(q, -1.0, 1.0);
      } else {
        codes_acc[r][c] = std::abs(v) > threshold_factor * s ? (v > 0 ? 1.0 : -1.0) : 0.0;
      }
    }
  }
  return {codes, scale};
}

/// The dtype the library keeps scales in.
inline torch::Dtype reference_scale_dtype(torch::Dtype weight_dtype) {
  return (weight_dtype == torch::kHalf || weight_dtype == torch::kBFloat16) ? torch::kFloat : weight_dtype;
}

/// Per-row 8-bit activations, in float32 arithmetic as the spec states it:
/// scale = max(absmax, 1e-5) / max_code (127 int8, 448 FP8 e4m3), value = x / scale clamped
/// to +-max_code, then rounded half to even to an integer (int8) or to the nearest FP8 e4m3
/// number. Values and scales are returned in double.
struct ReferenceActivations {
  torch::Tensor values;  // input's shape
  torch::Tensor scale;   // input's shape with the last dimension 1
};

inline ReferenceActivations reference_quantize_activations(const torch::Tensor& input, bool int8) {
  const int64_t cols = input.size(-1);
  const auto x = input.to(torch::kFloat).contiguous().reshape({-1, cols});
  const auto acc = x.accessor<float, 2>();
  const float max_code = int8 ? 127.0F : 448.0F;
  auto values = torch::zeros(x.sizes(), torch::kDouble);
  auto scale = torch::zeros({x.size(0), 1}, torch::kDouble);
  auto values_acc = values.accessor<double, 2>();
  for (int64_t r = 0; r < x.size(0); ++r) {
    float absmax = 0.0F;
    for (int64_t c = 0; c < cols; ++c) absmax = std::max(absmax, std::abs(acc[r][c]));
    const float s = std::max(absmax, 1e-5F) / max_code;
    scale[r][0] = s;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::clamp(acc[r][c] / s, -max_code, max_code);
      values_acc[r][c] = int8 ? std::nearbyint(v) : static_cast<float>(c10::Float8_e4m3fn(v));
    }
  }
  auto scale_shape = input.sizes().vec();
  scale_shape.back() = 1;
  return {values.reshape(input.sizes()), scale.reshape(scale_shape)};
}

/// Forward and gradients of y = x @ (codes * scale)^T + b by the straight-through
/// estimator, all in double. With `activations`, the forward uses them in place of x
/// (y = (values @ codes^T) * activation_scale * scale + b) and the gradients are the same
/// (straight-through for the activation quantizer too, grad_w from the unquantized x).
struct ReferenceLinear {
  torch::Tensor output, grad_input, grad_weight, grad_bias;
};

inline ReferenceLinear reference_ternary_linear(const torch::Tensor& input, const torch::Tensor& weight,
                                                const torch::Tensor& bias, const torch::Tensor& grad_output,
                                                const ReferenceTernary& q,
                                                const ReferenceActivations* activations = nullptr) {
  const int64_t out_features = weight.size(0), in_features = weight.size(1);
  const auto w_eff = q.codes * q.scale.unsqueeze(1);
  const auto x = input.to(torch::kDouble).reshape({-1, in_features});
  auto y = activations == nullptr ? x.mm(w_eff.t())
                                  : activations->values.reshape({-1, in_features}).mm(q.codes.t()) *
                                        activations->scale.reshape({-1, 1}) * q.scale;
  if (bias.defined()) y = y + bias.to(torch::kDouble);
  std::vector<int64_t> out_shape(input.sizes().begin(), input.sizes().end());
  out_shape.back() = out_features;
  ReferenceLinear ref;
  ref.output = y.reshape(out_shape);
  if (grad_output.defined()) {
    const auto g = grad_output.to(torch::kDouble).reshape({-1, out_features});
    ref.grad_input = g.mm(w_eff).reshape(input.sizes());
    ref.grad_weight = q.scale.unsqueeze(1) * g.t().mm(x);
    ref.grad_bias = g.sum(0);
  }
  return ref;
}

/// One decoding step of rotary causal self-attention, from the formulas: with angles
/// a_i = position * base^(-2i / D) (i < D/2), rot(x)_i = x_i cos a_i - x_{i+D/2} sin a_i and
/// rot(x)_{i+D/2} = x_{i+D/2} cos a_i + x_i sin a_i. The cache rows before `position` are
/// the given caches' ([B, H, C, D]); row `position` is rot(key) rounded to `cache_dtype` (as
/// the cache stores it) and value. Output: softmax_j(rot(q) . K_j / sqrt(D)) V_j over
/// j <= position, [B, H, D] in double.
struct ReferenceDecodeAttention {
  torch::Tensor output;   // [B, H, D]
  torch::Tensor key_row;  // [B, H, D], rot(key) as the cache holds it
};

inline torch::Tensor reference_rotate(const torch::Tensor& x, int64_t position, double base) {
  const auto v = x.to(torch::kDouble).contiguous();
  auto out = torch::empty_like(v);
  const int64_t rows = v.numel() / v.size(-1), d_size = v.size(-1), half = d_size / 2;
  const auto* in = v.data_ptr<double>();
  auto* o = out.data_ptr<double>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle =
          static_cast<double>(position) * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(d_size));
      const double x1 = in[r * d_size + i], x2 = in[r * d_size + i + half];
      o[r * d_size + i] = x1 * std::cos(angle) - x2 * std::sin(angle);
      o[r * d_size + i + half] = x2 * std::cos(angle) + x1 * std::sin(angle);
    }
  }
  return out;
}

inline ReferenceDecodeAttention reference_decode_attention(const torch::Tensor& query, const torch::Tensor& key,
                                                           const torch::Tensor& value, const torch::Tensor& key_cache,
                                                           const torch::Tensor& value_cache, int64_t position,
                                                           double base, torch::Dtype cache_dtype) {
  const int64_t batch = query.size(0), heads = query.size(1), d_size = query.size(2);
  const auto q = reference_rotate(query, position, base);
  const auto key_row = reference_rotate(key, position, base).to(cache_dtype).to(torch::kDouble);
  const auto v = value.to(torch::kDouble);
  const auto keys = key_cache.to(torch::kDouble), values = value_cache.to(torch::kDouble);
  auto output = torch::zeros({batch, heads, d_size}, torch::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      std::vector<double> scores(position + 1);
      double max_score = -INFINITY;
      for (int64_t j = 0; j <= position; ++j) {
        const auto k_j = j == position ? key_row[b][h] : keys[b][h][j];
        scores[j] = (q[b][h] * k_j).sum().item<double>() / std::sqrt(static_cast<double>(d_size));
        max_score = std::max(max_score, scores[j]);
      }
      double total = 0;
      for (auto& score : scores) total += (score = std::exp(score - max_score));
      for (int64_t j = 0; j <= position; ++j) {
        output[b][h] += (scores[j] / total) * (j == position ? v[b][h] : values[b][h][j]);
      }
    }
  }
  return {output, key_row};
}

/// Runs `statement` and expects a c10::Error whose message contains every one of `needles`.
template <typename Statement>
::testing::AssertionResult throws_error_mentioning(Statement&& statement, const std::vector<std::string>& needles) {
  try {
    statement();
  } catch (const c10::Error& error) {
    const std::string message = error.what_without_backtrace();
    for (const auto& needle : needles) {
      if (message.find(needle) == std::string::npos) {
        return ::testing::AssertionFailure()
               << "error message \"" << message << "\" does not mention \"" << needle << "\"";
      }
    }
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "no c10::Error was thrown";
}

}  // namespace bittorch::testing
