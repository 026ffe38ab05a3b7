#include "model/tensor.hpp"

#include "messages/error.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sys/mman.h>
#include <unistd.h>

namespace rondo {

size_t size_of(dtype t) {
  return t == dtype::f32 ? 4 : 8;
}

const char* to_string(dtype t) {
  return t == dtype::f32 ? "float32" : "float64";
}

std::string shape_string(const std::vector<uint64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0)
      out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() == 1)
    out += ',';
  out += ')';
  return out;
}

uint64_t tensor_info::count() const {
  uint64_t n = 1;
  for (auto d : shape)
    n *= d;
  return n;
}

uint64_t tensor_info::nbytes() const {
  return count() * size_of(type);
}

bool tensor_info::operator==(const tensor_info& other) const {
  return name == other.name && type == other.type && shape == other.shape;
}

void byte_buffer::deleter::operator()(std::byte* p) const {
  if (mapped > 0)
    ::munmap(p, mapped);
  else
    std::free(p);
}

void byte_buffer::allocate(size_t size, bool zero) {
  size_ = size;
  if (size == 0)
    return;
  constexpr size_t huge = size_t{2} << 20;
  if (size >= huge) {
    auto len = (size + huge - 1) / huge * huge;
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      throw std::bad_alloc{};
    ::madvise(p, len, MADV_HUGEPAGE); // a hint: failure is harmless
    data_ = {static_cast<std::byte*>(p), deleter{len}};
    return; // fresh anonymous pages are zero
  }
  auto rounded = (size + 63) / 64 * 64; // aligned_alloc wants a multiple
  auto* p = static_cast<std::byte*>(std::aligned_alloc(64, rounded));
  if (p == nullptr)
    throw std::bad_alloc{};
  if (zero)
    std::memset(p, 0, size);
  data_ = {p, deleter{0}};
}

void byte_buffer::shrink(size_t size) {
  if (size >= size_)
    return;
  size_ = size;
  auto& mapped = data_.get_deleter().mapped;
  if (mapped == 0)
    return;
  if (size == 0) {
    data_.reset();
    return;
  }
  auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  auto keep = (size + page - 1) / page * page;
  if (keep < mapped && ::munmap(data_.get() + keep, mapped - keep) == 0)
    mapped = keep;
}

byte_buffer::byte_buffer(size_t size) {
  allocate(size, false);
}

byte_buffer byte_buffer::zeros(size_t size) {
  byte_buffer out;
  out.allocate(size, true);
  return out;
}

byte_buffer::byte_buffer(const byte_buffer& other) : byte_buffer(other.size_) {
  if (size_ > 0)
    std::memcpy(data_.get(), other.data_.get(), size_);
}

byte_buffer& byte_buffer::operator=(const byte_buffer& other) {
  if (this != &other)
    *this = byte_buffer{other};
  return *this;
}

tensor::tensor(tensor_info info)
  : tensor_info(std::move(info)), data(nbytes()) {
  // nothing else
}

double tensor::at(uint64_t i) const {
  return type == dtype::f32 ? static_cast<double>(f32()[i]) : f64()[i];
}

model_spec spec_of(const model& m) {
  model_spec out;
  out.reserve(m.size());
  for (auto& t : m)
    out.push_back(static_cast<const tensor_info&>(t));
  return out;
}

caf::expected<tensor> make_tensor(std::string name, dtype type,
                                  std::vector<uint64_t> shape,
                                  const std::vector<double>& values) {
  tensor t{tensor_info{std::move(name), type, std::move(shape)}};
  if (values.size() != t.count())
    return caf::make_error(ec::invalid_argument,
                           "tensor '" + t.name + "': shape " +
                             shape_string(t.shape) + " holds " +
                             std::to_string(t.count()) + " values but " +
                             std::to_string(values.size()) + " were given");
  for (size_t i = 0; i < values.size(); ++i) {
    if (type == dtype::f32)
      t.f32()[i] = static_cast<float>(values[i]);
    else
      t.f64()[i] = values[i];
  }
  return t;
}

update_view::~update_view() = default;

bool update_view::random_access() const {
  return false;
}

caf::expected<const std::byte*>
update_view::read_range(size_t, uint64_t, uint64_t, std::byte*) const {
  return caf::make_error(ec::invalid_state,
                         "this model update cannot be read at an offset");
}

model_view::model_view(const model& m) : model_(&m), spec_(spec_of(m)) {
  // nothing else
}

const model_spec& model_view::spec() const {
  return spec_;
}

caf::error model_view::visit(size_t index, const chunk_visitor& fn) const {
  auto& t = (*model_)[index];
  return fn(t.data.data(), 0, t.count());
}

bool model_view::random_access() const {
  return true;
}

caf::expected<const std::byte*>
model_view::read_range(size_t index, uint64_t first, uint64_t,
                       std::byte*) const {
  auto& t = (*model_)[index];
  return t.data.data() + first * size_of(t.type);
}

} // namespace rondo
