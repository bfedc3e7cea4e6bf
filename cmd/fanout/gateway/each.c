/* for_each: a backend called once per element of another backend's array,
 * at most `concurrency` calls at once, or in batches of ids; each result
 * joined back in the items' order, null for a missing or failed one
 * (DataLoader's contract). */
#include <stdlib.h>
#include <string.h>

#include "run.h"

/* Starts as many calls of for_each backend `i` as its concurrency allows;
 * items without a value get null and no call. Ends it once all are in. */
void gw_each_more(gw_run *r, int i)
{
    const gw_backend *b = &r->ep->backends[i];
    gw_bstate *s = &r->bs[i];
    size_t per = b->batch_max ? b->batch_max : 1;
    while (s->next < s->nitems && s->inflight < b->concurrency) {
        size_t first = s->next, n = s->nitems - first < per ? s->nitems - first : per;
        s->next += n;
        if (!b->batch_max &&
            !gw_path_get(json_array_get(s->items, first), &b->each_sub, 0, b->each_sub.n))
            continue; /* an item without the field: null */
        const char *why = "nomem";
        if (gw_start_call(r, i, first, n, &why) != 0) {
            if (!s->item_errors)
                s->item_errors = json_array();
            for (size_t k = first; k < first + n; k++)
                json_array_append_new(s->item_errors,
                                      json_pack("{s:I, s:s}", "item", (json_int_t)k, "error", why));
            continue;
        }
        s->inflight++;
    }
    if (s->inflight == 0 && s->next >= s->nitems) {
        json_t *res = s->result;
        s->result = NULL;
        gw_succeed(r, i, res);
    }
}

void gw_start_each(gw_run *r, int i)
{
    const gw_backend *b = &r->ep->backends[i];
    gw_bstate *s = &r->bs[i];
    json_t *arr = gw_path_get(r->scope.results[b->each_src], &b->each_arr, 0, b->each_arr.n);
    if (!json_is_array(arr)) {
        gw_fail(r, i, "missing_input", 0,
                fan_sprintf(r->rq, "for_each %s: no array there", b->each_text));
        return;
    }
    s->nitems = json_array_size(arr);
    if (s->nitems > b->max_items) {
        gw_fail(r, i, "too_many_items", 0,
                fan_sprintf(r->rq, "for_each %s: %zu items, more than max_items (%u)", b->each_text,
                            s->nitems, b->max_items));
        return;
    }
    s->items = arr;
    s->result = json_array();
    for (size_t k = 0; k < s->nitems; k++)
        json_array_append_new(s->result, json_null());
    s->state = B_RUNNING;
    s->t0 = fan_now();
    gw_each_more(r, i);
}

/* Joins a batch's results into the backend's, by the match member or by
 * position; an id without a result stays null. */
void gw_join_batch(gw_run *r, const gw_backend *b, gw_bstate *s, const gw_slot *sl, json_t *j)
{
    json_t *arr = b->batch_results.n ? gw_path_get(j, &b->batch_results, 0, b->batch_results.n) : j;
    for (size_t k = 0; k < sl->n; k++) {
        json_t *got = NULL;
        if (!b->batch_match) {
            got = json_array_get(arr, k);
        } else {
            json_t *id = gw_path_get(json_array_get(s->items, sl->first + k), &b->each_sub, 0,
                                     b->each_sub.n);
            size_t x;
            json_t *el;
            json_array_foreach(arr, x, el)
            {
                json_t *m = json_object_get(el, b->batch_match);
                if (m && id &&
                    (json_equal(m, id) ||
                     (json_is_string(m) && json_is_integer(id) &&
                      strtoll(json_string_value(m), NULL, 10) == json_integer_value(id)) ||
                     (json_is_integer(m) && json_is_string(id) &&
                      strtoll(json_string_value(id), NULL, 10) == json_integer_value(m)))) {
                    got = el;
                    break;
                }
            }
        }
        if (got)
            json_array_set_new(s->result, sl->first + k, gw_shape(b, got));
    }
}
