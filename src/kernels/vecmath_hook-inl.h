/*
 * The test hook behind fl_vector_math, for one (dtype, ISA) instantiation: the vector math of
 * vecmath-inl.h applied elementwise, so that the tests can measure its accuracy.  Included
 * last (fl_isa_dtype.h): GCC's register allocation of the kernels depends on the order of
 * the function definitions in the translation unit, and this position keeps the kernels'
 * machine code as it was.  No include guard on purpose.
 */

/* op: an FL_VM_* code */
static void FN(vector_math)(int op, int64_t n, const R *x, R *out)
{
    for (int64_t i = 0; i < n; i += L) {
        const int64_t k = n - i < L ? n - i : L;
        const VR v = k == L ? FN(vload)(x + i) : FN(vload_part)(x + i, k, 0);
        const VR r = op == FL_VM_EXP          ? FN(vexp)(v)
                     : op == FL_VM_LOG        ? FN(vlog)(v)
                     : op == FL_VM_LOG1P      ? FN(vlog1p)(v)
                     : op == FL_VM_LOG1P_UNIT ? FN(vlog1p_unit)(v)
                                              : FN(vlog1p_nonneg)(v);
        FN(vstore_part)(out + i, r, k);
    }
}
