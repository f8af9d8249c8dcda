// Reading whole files: the one readFile of the engine and the CLI.
#pragma once

#include <string>

namespace openlora {

/**
 * The bytes of the file at `path`. @throws Error (errors.h): not_found when it does not exist,
 * bad_file when it cannot be read; the message is "<path>: cannot open: <reason>" plus
 * " (<hint>)" when a hint is given (e.g. "is this a Hugging Face model folder?").
 */
std::string readFile(const std::string& path, const std::string& hint = "");

}  // namespace openlora
