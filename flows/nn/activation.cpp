#include "flows/nn/activation.hpp"

#include <stdexcept>

namespace bf {

Activation parse_activation(const std::string& name) {
  if (name == "softplus") return Activation::softplus;
  if (name == "swish" || name == "silu") return Activation::swish;
  if (name == "tanh") return Activation::tanh;
  if (name == "identity") return Activation::identity;
  throw std::invalid_argument("unknown activation '" + name + "' (known: softplus, swish, tanh, identity)");
}

std::string activation_name(Activation a) {
  switch (a) {
    case Activation::softplus: return "softplus";
    case Activation::swish: return "swish";
    case Activation::tanh: return "tanh";
    default: return "identity";
  }
}

}  // namespace bf
