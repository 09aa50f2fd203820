/* error.c -- messages and names generated from SL_ERRNO_MAP. */
#include "sluice/error.h"

const char *sl_strerror(int err)
{
    switch (err) {
    case SL_OK: return "success";
#define SL__ERR_MSG(name, val, msg) case SL_##name: return msg;
    SL_ERRNO_MAP(SL__ERR_MSG)
#undef SL__ERR_MSG
    }
    return "unknown error";
}

const char *sl_err_name(int err)
{
    switch (err) {
    case SL_OK: return "SL_OK";
#define SL__ERR_NAME(name, val, msg) case SL_##name: return "SL_" #name;
    SL_ERRNO_MAP(SL__ERR_NAME)
#undef SL__ERR_NAME
    }
    return "SL_EUNKNOWN";
}
