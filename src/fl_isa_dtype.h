/*
 * One dtype of one ISA: included twice by fl_isa.h (float32, float64) after it defines
 * FL_REAL, FL_SUF, FL_IS_F32, FL_VR, FL_VI, FL_VX, FL_XLANE, FL_LANES and, for the x86
 * intrinsics, FL_PSD (ps | pd) with the matching FL_M256 / FL_M512 types.  Includes the ISA's
 * primitives (FL_OPS_HEADER, set by isa/fl_isa_<name>.c: the ops and the FL_HAS_* capability
 * flags), then the kernels, and undefines what it defined (fl_isa.h undefines its parameters).  No
 * include guard on purpose.
 *
 * The kernels see the template parameters under short names: VR (vector of FL_REAL), VI (the
 * same-width integer vector), VX (lane-index vector), R (FL_REAL), L (lanes per vector).
 */
#define VR FL_VR
#define VI FL_VI
#define VX FL_VX
#define R  FL_REAL
#define L  FL_LANES

#include FL_OPS_HEADER

/* in dependency order; each file's banner says which kernels it holds.  The order of the
 * function definitions steers GCC's register allocation, so a reordering can move the speed of
 * a kernel by a few percent: compare timings before and after one. */
#include "kernels/vecmath-inl.h"
#include "kernels/ce_coef-inl.h"
#include "kernels/class_rows-inl.h"
#include "kernels/class_tiles-inl.h"
#include "kernels/tiles-inl.h"
#include "kernels/targets-inl.h"
#include "kernels/class_tile_chunks-inl.h"
#include "kernels/nll-inl.h"
#include "kernels/ew_losses-inl.h"
#include "kernels/ew_loop-inl.h"
#include "kernels/embedding-inl.h"
#include "kernels/vecmath_hook-inl.h"
/* after the hook: a new kernel placed last leaves the machine code of those above unchanged */
#include "kernels/row_stats-inl.h"
#include "kernels/boxes-inl.h"
#include "kernels/ctc-inl.h"
#include "kernels/gbdt-inl.h"

#define FL_OPS_UNDEF
#include FL_OPS_HEADER
#undef FL_OPS_UNDEF

#undef VR
#undef VI
#undef VX
#undef R
#undef L
