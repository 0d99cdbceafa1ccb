// lomo.h, implementation included, compiled as C++ (warnings are errors here).
#define LOMO_IMPLEMENTATION
#include "../lomo.h"
int lomo_cxx_check_n_params(const lomo_model *m) { return (int)lomo_n_params(m); }
