/* placeholder: the CPU backend is being written */
#include "model/backend.h"
const tg_backend_ops tg_cpu_backend_ops = {.name = "cpu"};
