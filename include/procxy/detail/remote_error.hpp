// procxy/detail/remote_error.hpp — exceptions on the wire.
//
// error_payload (body of a reply_error frame):
//   u8  code        which standard type to rebuild (exception_code), or `other`
//   str type_name   demangled dynamic type of the thrown object
//   str what        its what()
//   i32 value, u8 category, str category_name    only for std::system_error
#pragma once

#include <exception>
#include <string>

#include "procxy/detail/codec.hpp"

namespace procxy::detail {

// Encodes the exception currently being handled (call from inside a catch block).
void encode_current_exception(encoder& e);
// Rebuilds the exception a reply_error carries: standard types as themselves, others as
// procxy::remote_error. `method` names the call for messages.
std::exception_ptr decode_remote_error(decoder& d, const char* method);
// Demangles a type name from typeid(...).name().
std::string demangle(const char* mangled);

}  // namespace procxy::detail
