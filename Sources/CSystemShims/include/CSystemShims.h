#ifndef GATEHOUSE_CSYSTEMSHIMS_H
#define GATEHOUSE_CSYSTEMSHIMS_H

#include <signal.h>
#include <spawn.h>
#include <sys/signalfd.h>
#include <sys/types.h>

/// prctl(PR_SET_PDEATHSIG, sig): prctl is variadic, so Swift cannot call it directly.
int CSystemShims_set_parent_death_signal(int sig);

/// getsockopt(SO_PEERCRED): struct ucred needs _GNU_SOURCE, which the Glibc module does not define.
int CSystemShims_peer_uid(int fd, uid_t *uid);

/// setpriority(PRIO_PROCESS, gettid(), nice): lowers the calling thread only (gettid goes through the variadic
/// syscall(2), which Swift cannot call).
int CSystemShims_set_thread_nice(int nice);

/// POSIX_SPAWN_SETSID is a GNU extension the Glibc module does not export.
int CSystemShims_posix_spawn_setsid_flag(void);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34): the child closes every descriptor >= from. A GNU
/// extension the Glibc module does not export.
int CSystemShims_posix_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

#endif
