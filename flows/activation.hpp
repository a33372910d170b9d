// Smooth activations with their first and second derivatives. The reverse
// pass of a layer that carries tangents needs σ'' (DESIGN.md), so every
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
template <Activation A, class T>
KOKKOS_INLINE_FUNCTION T activate_fixed(T a, T& d1, T& d2) {
  if constexpr (A == Activation::softplus) {
    const T s = sigmoid(a);
    d1 = s;
    d2 = s * (T(1) - s);
    return softplus(a);
  } else if constexpr (A == Activation::swish) {
    const T s = sigmoid(a);
    const T ss = s * (T(1) - s);
    d1 = s + a * ss;
    d2 = ss * (T(2) + a * (T(1) - T(2) * s));
    return a * s;
  } else if constexpr (A == Activation::tanh) {
    // tanh a = 2 s(2a) − 1 keeps the vectorizable exp.
    const T h = T(2) * sigmoid(T(2) * a) - T(1);
    const T g = T(1) - h * h;
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

/// σ(a); writes σ'(a) and σ''(a).
template <class T>
KOKKOS_INLINE_FUNCTION T activate(Activation act, T a, T& d1, T& d2) {
  switch (act) {
    case Activation::softplus: {
      const T s = sigmoid(a);
      d1 = s;
      d2 = s * (T(1) - s);
      return softplus(a);
    }
    case Activation::swish: {
      const T s = sigmoid(a);
      const T ss = s * (T(1) - s);
      d1 = s + a * ss;
      d2 = ss * (T(2) + a * (T(1) - T(2) * s));
      return a * s;
    }
    case Activation::tanh: {
      const T h = kmath::tanh(a);
      const T g = T(1) - h * h;
      d1 = g;
      d2 = T(-2) * h * g;
      return h;
    }
    default:
      d1 = T(1);
      d2 = T(0);
      return a;
  }
}

}  // namespace bf
