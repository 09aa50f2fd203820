/* name.h -- the one rule for queue names, shared by the node, the
 * coordinator, libsluice and the CLI: 1 to SL_QUEUE_NAME_MAX bytes from
 * [A-Za-z0-9._:-]. Names are compared byte for byte. */
#ifndef SLUICE_NAME_H
#define SLUICE_NAME_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_QUEUE_NAME_MAX 128 /* bytes in a queue name */

/* The sentence every component uses to refuse a name. */
#define SL_QUEUE_NAME_RULE "1-128 characters from [A-Za-z0-9._:-]"

/* True if the len bytes at s form a valid queue name. A NUL among them
 * makes it invalid: a name is never cut short. s may be NULL (len 0). */
bool sl_queue_name_ok(const char *s, size_t len);

/* The same for a NUL-terminated string (NULL is invalid). */
bool sl_queue_name_ok_str(const char *s);

#ifdef __cplusplus
}
#endif
#endif
