#!/usr/bin/env bash
# A stand-in for ssh in the tests, which have no sshd: `fake-ssh.sh [-p PORT] [-o OPT]
# [USER@]HOST COMMAND...` runs COMMAND here, as ssh would run it on HOST, with
# XKVM_RUNDIR=$FAKE_SSH_RUNDIR (the "far" host's run directory) and its stdin and
# stdout as ssh's. Its arguments are appended to $FAKE_SSH_LOG if set.
[ -n "${FAKE_SSH_LOG:-}" ] && echo "$*" >> "$FAKE_SSH_LOG"
while [ $# -gt 0 ]; do
  case $1 in
  -p|-o|-i|-l) shift 2 ;;
  -*) shift ;;
  *) break ;;
  esac
done
shift                   # the host
export XKVM_RUNDIR=$FAKE_SSH_RUNDIR
exec "$@"
