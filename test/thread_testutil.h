/* thread_testutil.h: counting this process's threads, for the tests that no thread outlives
 * the handle that started it. */
#ifndef THREAD_TESTUTIL_H
#define THREAD_TESTUTIL_H

#include <check.h>
#include <dirent.h>
#include <unistd.h>

/* Threads of this process, from /proc/self/task. */
static inline int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The count once it settles: a joined thread is gone, but the kernel may list it in
 * /proc/self/task for a moment after pthread_join returns (it wakes the joiner before it
 * unhashes the task). Waits up to 2 s for the count to reach want. */
static inline int settled_threads(int want)
{
    int n = count_threads();
    for (int i = 0; i < 2000 && n != want; i++) {
        usleep(1000);
        n = count_threads();
    }
    return n;
}

#endif
