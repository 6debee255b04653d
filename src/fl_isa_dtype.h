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
/* the contract of every ISA header (isa/fl_ops_generic.h): each capability flag (0 or 1) and
 * the ops every ISA provides; they are undefined here after the kernels, the header's second
 * pass undefines its own other ops */
#if !defined(FL_HAS_EXP_TABLE)
#error "FL_OPS_HEADER must define FL_HAS_EXP_TABLE"
#endif
#if !defined(FL_HAS_F32_LOG_TABLE)
#error "FL_OPS_HEADER must define FL_HAS_F32_LOG_TABLE"
#endif
#if !defined(FL_HAS_NORMAL_CHECK)
#error "FL_OPS_HEADER must define FL_HAS_NORMAL_CHECK"
#endif
#if !defined(FL_HAS_RCP14)
#error "FL_OPS_HEADER must define FL_HAS_RCP14"
#endif
#if !defined(FL_HAS_SCALEF)
#error "FL_OPS_HEADER must define FL_HAS_SCALEF"
#endif
#if !defined(FL_HAS_SRA64)
#error "FL_OPS_HEADER must define FL_HAS_SRA64"
#endif
#if !defined(FL_HAS_MASK_REGS)
#error "FL_OPS_HEADER must define FL_HAS_MASK_REGS"
#endif
#if !defined(FL_HAS_REG_TRANSPOSE)
#error "FL_OPS_HEADER must define FL_HAS_REG_TRANSPOSE"
#endif
#if !defined(FL_HAS_FAST_MASK_LOADS)
#error "FL_OPS_HEADER must define FL_HAS_FAST_MASK_LOADS"
#endif
#if !defined(FL_HAS_RAW_TILES)
#error "FL_OPS_HEADER must define FL_HAS_RAW_TILES"
#endif
#if !defined(FL_HAS_GATHER)
#error "FL_OPS_HEADER must define FL_HAS_GATHER"
#endif
#if !defined(FL_MAX_OR_B)
#error "FL_OPS_HEADER must define FL_MAX_OR_B"
#endif
#if !defined(FL_MIN_OR_B)
#error "FL_OPS_HEADER must define FL_MIN_OR_B"
#endif
#if !defined(FL_ZMUL)
#error "FL_OPS_HEADER must define FL_ZMUL"
#endif
#if !defined(FL_ANY_LT)
#error "FL_OPS_HEADER must define FL_ANY_LT"
#endif

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
#undef FL_HAS_EXP_TABLE
#undef FL_HAS_F32_LOG_TABLE
#undef FL_HAS_NORMAL_CHECK
#undef FL_HAS_RCP14
#undef FL_HAS_SCALEF
#undef FL_HAS_SRA64
#undef FL_HAS_MASK_REGS
#undef FL_HAS_REG_TRANSPOSE
#undef FL_HAS_FAST_MASK_LOADS
#undef FL_HAS_RAW_TILES
#undef FL_HAS_GATHER
#undef FL_MAX_OR_B
#undef FL_MIN_OR_B
#undef FL_ZMUL
#undef FL_ANY_LT

#undef VR
#undef VI
#undef VX
#undef R
#undef L
