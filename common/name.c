/* name.c -- the queue name rule (name.h). */
#include <string.h>

#include "sluice/name.h"

bool sl_queue_name_ok(const char *s, size_t len)
{
    if (!s || len == 0 || len > SL_QUEUE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

bool sl_queue_name_ok_str(const char *s)
{
    return s && sl_queue_name_ok(s, strnlen(s, SL_QUEUE_NAME_MAX + 1));
}
