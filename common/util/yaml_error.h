// Errors of the YAML config files (pools, keys): FILE:LINE:COLUMN: FIELD: WHAT. A parser throws
// YamlError from deep inside its walk and catches it at its one public function, which returns
// the message as a Status (exceptions stay inside the component).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

namespace segue {

struct YamlError {
  std::string message;
};

// Throws the error of `field` at node `n` of `file`.
[[noreturn]] inline void FailAt(const std::string& file, const YAML::Node& n,
                                const std::string& field, const std::string& what) {
  const YAML::Mark m = n.Mark();
  throw YamlError{file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) +
                  ": " + field + ": " + what};
}

// yaml-cpp's own exception (broken YAML) as FILE:LINE:COLUMN: what.
inline std::string YamlExceptionText(const std::string& file, const YAML::Exception& e) {
  return file + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
         ": " + e.msg;
}

}  // namespace segue
