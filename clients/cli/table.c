/* table.c -- the tables the sluice command prints (stats, the cluster,
 * dead jobs): cells filled row by row, then printed with every column as
 * wide as its widest cell. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

char (*sl_cli_table_row(sl_cli_table_t *t))[SL_CLI_CELL]
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char(*c)[SL_CLI_CELL] = realloc(t->cells, cap * (size_t)t->ncols * SL_CLI_CELL);
        if (!c)
            return NULL;
        t->cells = c;
        t->cap = cap;
    }
    char(*row)[SL_CLI_CELL] = t->cells + t->nrows++ * (size_t)t->ncols;
    memset(row, 0, (size_t)t->ncols * SL_CLI_CELL);
    return row;
}

static const char *s_cell(const sl_cli_table_t *t, size_t r, int i)
{
    return r == 0 ? t->heads[i] : t->cells[(r - 1) * (size_t)t->ncols + (size_t)i];
}

void sl_cli_table_print(sl_cli_table_t *t)
{
    int w[SL_CLI_COLS_MAX] = {0};
    for (size_t r = 0; r <= t->nrows; r++)
        for (int i = 0; i < t->ncols; i++)
            if ((int)strlen(s_cell(t, r, i)) > w[i])
                w[i] = (int)strlen(s_cell(t, r, i));
    for (size_t r = 0; r <= t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *sep = i == 0 ? "" : "  ";
            if (t->left[i] != 'l')
                printf("%s%*s", sep, w[i], s_cell(t, r, i));
            else if (i + 1 == t->ncols) /* no trailing blanks */
                printf("%s%s", sep, s_cell(t, r, i));
            else
                printf("%s%-*s", sep, w[i], s_cell(t, r, i));
        }
        printf("\n");
    }
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}
