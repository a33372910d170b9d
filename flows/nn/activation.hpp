// Smooth activations with their first and second derivatives. The reverse
// pass of a layer that carries tangents needs σ'' (the tangent ḣ = σ'(a) ȧ
// depends on a through σ'), so every
// activation here is C² and written with σ, σ', σ'' side by side.
//   softplus  σ = log(1 + e^a)     σ' = s(a)                 σ'' = s(1 − s)
//   swish     σ = a s(a)           σ' = s + a s(1 − s)       σ'' = s(1 − s)(2 + a(1 − 2s))
//   tanh      σ = tanh a           σ' = 1 − σ²               σ'' = −2σ(1 − σ²)
//   identity  σ = a                σ' = 1                    σ'' = 0
// with s the logistic sigmoid.
#pragma once

#include <string>
#include <type_traits>

#include "physics/core.hpp"

namespace bf {

enum class Activation : int { identity = 0, softplus = 1, swish = 2, tanh = 3 };

/// Parses "softplus" | "swish" | "silu" | "tanh" | "identity"; throws std::invalid_argument.
Activation parse_activation(const std::string& name);
std::string activation_name(Activation a);

/// σ(a) for a compile-time activation (loops over it vectorize); writes σ'(a), σ''(a).
/// Every branch is a select and every transcendental a polynomial (vexp,
/// vexpm1, vlog1p_unit in physics/core.hpp), so no libm call remains in the
/// engine's loops. The forms avoid cancellation, so each of σ, σ', σ'' keeps a
/// few ulps of relative accuracy in both tails (tests/test_engine.cpp,
/// ActivationsMatchLibm, states the maximum errors): with e = e^{−|a|} and
/// r = 1/(1 + e), s = r (a ≥ 0) or e r (a < 0), s(1 − s) = e r², 1 − 2s = ∓(1 − e) r;
/// tanh|a| = −expm1(−2|a|) / (2 + expm1(−2|a|)), 1 − tanh² = 4 e₂ / (1 + e₂)², e₂ = e^{−2|a|}.
template <Activation A, class T>
KOKKOS_FORCEINLINE_FUNCTION T activate_fixed(T a, T& d1, T& d2) {
  if constexpr (A == Activation::softplus || A == Activation::swish) {
    const bool pos = a >= T(0);
    const T e = vexp(pos ? -a : a), r = T(1) / (T(1) + e);
    const T s = pos ? r : e * r;
    const T ss = e * r * r;  // s (1 − s)
    if constexpr (A == Activation::softplus) {
      d1 = s;
      d2 = ss;
      return (pos ? a : T(0)) + vlog1p_unit(e);
    } else {
      const T one_m_2s = (pos ? e - T(1) : T(1) - e) * r;
      d1 = s + a * ss;
      d2 = ss * (T(2) + a * one_m_2s);
      return a * s;
    }
  } else if constexpr (A == Activation::tanh) {
    const bool pos = a >= T(0);
    const T m2 = pos ? T(-2) * a : T(2) * a;  // −2|a|
    const T em1 = vexpm1(m2), e2 = vexp(m2);
    const T th = -em1 / (T(2) + em1);         // tanh |a|
    const T h = pos ? th : -th;
    const T g = T(4) * e2 / ((T(1) + e2) * (T(1) + e2));
    d1 = g;
    d2 = T(-2) * h * g;
    return h;
  } else {
    d1 = T(1);
    d2 = T(0);
    return a;
  }
}

/// Calls f with the activation as a compile-time constant (std::integral_constant).
template <class F>
void with_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::softplus: f(std::integral_constant<Activation, Activation::softplus>{}); break;
    case Activation::swish: f(std::integral_constant<Activation, Activation::swish>{}); break;
    case Activation::tanh: f(std::integral_constant<Activation, Activation::tanh>{}); break;
    default: f(std::integral_constant<Activation, Activation::identity>{}); break;
  }
}

}  // namespace bf
