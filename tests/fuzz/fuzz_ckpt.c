/* libFuzzer: the HDF5 checkpoint reader (ckpt/read.c): tg_ckpt_load and tg_ckpt_info_read. */
#include <hdf5.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static int quiet;
    if (!quiet) { /* garbage makes HDF5 print its error stack; the status codes are what we test */
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        quiet = 1;
    }
    const char *path = tg_fuzz_to_file(data, n, "h5");
    tg_error err = {0};
    tg_ckpt_state st;
    memset(&st, 0, sizeof st);
    (void)tg_ckpt_load(path, &st, &err);
    tg_ckpt_state_free(&st);
    tg_ckpt_info info;
    memset(&info, 0, sizeof info);
    (void)tg_ckpt_info_read(path, &info, &err);
    tg_ckpt_info_free(&info);
    /* every error path must close what it opened */
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) {
        fprintf(stderr, "HDF5 objects left open: %ld\n", (long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
        abort();
    }
    unlink(path);
    H5garbage_collect(); /* HDF5's free lists would otherwise grow the RSS run after run */
    return 0;
}
