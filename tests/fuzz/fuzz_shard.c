/* libFuzzer: the HDF5 shard reader (data/shard.c): metadata, verify, and a token read. */
#include <hdf5.h>

#include "data/shard.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static int quiet;
    if (!quiet) { /* garbage makes HDF5 print its error stack; the status codes are what we test */
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        quiet = 1;
    }
    const char *path = tg_fuzz_to_file(data, n, "h5");
    tg_shard_info info;
    tg_error err = {0};
    if (tg_shard_read_info(path, &info, &err) == TG_OK) {
        uint32_t out[64];
        uint64_t k = info.n_tokens < 64 ? info.n_tokens : 64;
        tg_shard_handle h;
        tg_shard_handle_init(&h);
        (void)tg_shard_read_tokens(&h, path, &info, 0, k, out, &err);
        tg_shard_handle_close(&h);
    }
    tg_shard_info info2;
    (void)tg_shard_verify(path, &info2, &err);
    /* every error path must close what it opened */
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) {
        fprintf(stderr, "HDF5 objects left open: %ld\n", (long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
        abort();
    }
    unlink(path);
    H5garbage_collect(); /* HDF5's free lists would otherwise grow the RSS run after run */
    return 0;
}
