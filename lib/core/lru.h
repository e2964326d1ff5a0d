/* lru.h: the intrusive least-recently-used list of the host and device expert caches
 * (internal). A cache embeds an r1_lru_node as the FIRST member of its slot type, so a node
 * pointer converts back to its slot; the head is a sentinel whose next is the least recent. */
#ifndef R1_LRU_H
#define R1_LRU_H

#include <stddef.h>

typedef struct r1_lru_node {
    struct r1_lru_node *prev, *next; /* both NULL while not listed */
} r1_lru_node;

static inline void r1_lru__init(r1_lru_node *head)
{
    head->prev = head->next = head;
}

static inline int r1_lru__listed(const r1_lru_node *n)
{
    return n->prev != NULL;
}

static inline void r1_lru__unlink(r1_lru_node *n)
{
    if (n->prev != NULL) {
        n->prev->next = n->next;
        n->next->prev = n->prev;
        n->prev = n->next = NULL;
    }
}

/* Lists n as the most recent. */
static inline void r1_lru__push(r1_lru_node *head, r1_lru_node *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

/* The least recent node, or NULL when the list is empty. */
static inline r1_lru_node *r1_lru__oldest(r1_lru_node *head)
{
    return head->next != head ? head->next : NULL;
}

#endif
