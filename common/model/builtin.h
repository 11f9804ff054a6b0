// The built-in models, one factory each (the registry is CreateBuiltinModel in model.h).
#pragma once

#include <memory>

#include "common/model/model.h"

namespace segue::model {

std::unique_ptr<Model> CreateZoomModel();   // zoom.cc: the reference model
std::unique_ptr<Model> CreateStampModel();  // stamp.cc: frames that show their own time

}  // namespace segue::model
