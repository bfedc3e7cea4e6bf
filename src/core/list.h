/* Intrusive doubly linked lists: the node lives inside the element, so
 * linking never allocates. A list head is a node that points to itself. */
#ifndef FAN_CORE_LIST_H
#define FAN_CORE_LIST_H

#include <stddef.h>

typedef struct fan__list {
    struct fan__list *prev, *next;
} fan__list;

#define fan__container_of(ptr, type, field) ((type *)((char *)(ptr) - offsetof(type, field)))

static inline void fan__list_init(fan__list *head)
{
    head->prev = head->next = head;
}

static inline int fan__list_empty(const fan__list *head)
{
    return head->next == head;
}

/* Appends `node` at the tail of `head`. */
static inline void fan__list_push(fan__list *head, fan__list *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

/* Unlinks `node` and makes it a self-linked (empty) node, so removing twice is
 * harmless. */
static inline void fan__list_remove(fan__list *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = node;
}

#define fan__list_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

#endif
