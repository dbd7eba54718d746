/* data/h5zstd.c — see h5zstd.h. Depends only on HDF5 and libzstd (it is also compiled into
 * the loadable plugin data/h5plugin). */
#include "data/h5zstd.h"

#include <zstd.h>

static size_t h5z_zstd(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                       size_t nbytes, size_t *buf_size, void **buf) {
    if (flags & H5Z_FLAG_REVERSE) {
        unsigned long long out_n = ZSTD_getFrameContentSize(*buf, nbytes);
        if (out_n == ZSTD_CONTENTSIZE_UNKNOWN || out_n == ZSTD_CONTENTSIZE_ERROR) return 0;
        void *out = H5allocate_memory((size_t)out_n, 0);
        if (!out) return 0;
        size_t r = ZSTD_decompress(out, (size_t)out_n, *buf, nbytes);
        if (ZSTD_isError(r) || r != out_n) {
            H5free_memory(out);
            return 0;
        }
        H5free_memory(*buf);
        *buf = out;
        *buf_size = (size_t)out_n;
        return r;
    }
    int level = cd_nelmts > 0 ? (int)cd_values[0] : 3;
    size_t cap = ZSTD_compressBound(nbytes);
    void *out = H5allocate_memory(cap, 0);
    if (!out) return 0;
    size_t r = ZSTD_compress(out, cap, *buf, nbytes, level);
    if (ZSTD_isError(r)) {
        H5free_memory(out);
        return 0;
    }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = cap;
    return r;
}

const H5Z_class2_t tg_h5z_zstd_class = {
    H5Z_CLASS_T_VERS, (H5Z_filter_t)32015, 1, 1, "Zstandard compression", NULL, NULL,
    h5z_zstd,
};

