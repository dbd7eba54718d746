/* data/h5zstd.h — the HDF5 zstd filter (registered id 32015; cd_values[0] = compression level,
 * default 3), one zstd frame per chunk with its content size, as hdf5plugin's Zstd writes. Used
 * in-process by data/h5util.c (H5Zregister) and built as the loadable plugin libh5zstd.so
 * (data/h5plugin) for h5dump/h5py through HDF5_PLUGIN_PATH. */
#ifndef TG_H5ZSTD_H
#define TG_H5ZSTD_H

#include <hdf5.h>

extern const H5Z_class2_t tg_h5z_zstd_class;

#endif
