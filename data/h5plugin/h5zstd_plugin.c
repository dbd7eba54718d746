/* data/h5plugin/h5zstd_plugin.c — truthgpt's zstd filter (32015) as an HDF5 dynamic plugin
 * (the H5PL interface), so stock h5dump/h5py read truthgpt files with
 * HDF5_PLUGIN_PATH=$(truthgpt --hdf5-plugin-dir). */
#include <H5PLextern.h>

#include "data/h5zstd.h"

H5PL_type_t H5PLget_plugin_type(void) { return H5PL_TYPE_FILTER; }
const void *H5PLget_plugin_info(void) { return &tg_h5z_zstd_class; }
