# bash completion for xkvm(1). The commands, their arguments and options are read
# from `xkvm help` (the CLI's own command table), so a new command completes without
# a change here. DOMAIN completes to the names in `xkvm list`; CFG, CONFIG, FILE and
# PATH complete to files.

# _xkvm_help XKVM [--rundir DIR]: one line per command, "NAME SYNOPSIS-WORDS...".
_xkvm_help()
{
    "$@" help 2>/dev/null | awk '
        /^  [a-z][a-z0-9-]*/ { if (cur != "") print cur; cur = substr($0, 3); sub(/  .*/, "", cur); next }
        /^   *\[/ && cur != "" { s = $0; sub(/^ */, "", s); sub(/  .*/, "", s); cur = cur " " s; next }
        { if (cur != "") print cur; cur = "" }
        END { if (cur != "") print cur }'
}

_xkvm()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local xkvm=(${COMP_WORDS[0]}) i cmd= cmdpos=0
    COMPREPLY=()

    # The global options before the command; --rundir is passed on to xkvm.
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --rundir) xkvm+=(--rundir "${COMP_WORDS[i+1]}"); ((i++)) ;;
            --rundir=*) xkvm+=("${COMP_WORDS[i]}") ;;
            -*) ;;
            *) cmd=${COMP_WORDS[i]}; cmdpos=$i; break ;;
        esac
    done

    if [ -z "$cmd" ]; then
        case $prev in
            --rundir) compopt -o dirnames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")); return ;;
        esac
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W '--rundir --help --version' -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(_xkvm_help "${xkvm[@]}" | awk '{print $1}')" -- "$cur"))
        fi
        return
    fi

    local syn
    syn=$(_xkvm_help "${xkvm[@]}" | awk -v c="$cmd" '$1 == c { $1 = ""; print; exit }')
    # Options: --name (and -x) in the synopsis; an option followed by an upper-case
    # word takes an argument.
    local opts= argopts= w words=($(echo "$syn" | tr -d '[]' | tr '|' ' '))
    for ((i = 0; i < ${#words[@]}; i++)); do
        w=${words[i]}
        if [[ $w == -* ]]; then
            opts+=" $w"
            # --opt ARG takes an argument; --opt word takes that word (--compat xen-4.17)
            [[ -n ${words[i+1]:-} && ${words[i+1]} != -* ]] && argopts+=" $w=${words[i+1]}"
        fi
    done
    for w in $argopts; do
        if [ "$prev" = "${w%%=*}" ]; then
            case ${w#*=} in
                FILE|PATH|CFG|CONFIG) compopt -o filenames 2>/dev/null
                                      COMPREPLY=($(compgen -f -- "$cur")) ;;
                [a-z]*) COMPREPLY=($(compgen -W "${w#*=}" -- "$cur")) ;;
            esac
            return
        fi
    done
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
        return
    fi

    # Which positional argument is this? Count the words since the command that are
    # neither options nor their arguments.
    local n=0 skip=0
    for ((i = cmdpos + 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if ((skip)); then skip=0; continue; fi
        if [[ $w == -* ]]; then
            [[ " $argopts " == *" $w="* ]] && skip=1
            continue
        fi
        ((n++))
    done
    local pos=() k=0
    for w in "${words[@]}"; do
        [[ $w == -* ]] && { k=1; continue; }
        # a word after an option is that option's argument
        if ((k)); then k=0; continue; fi
        [[ $w =~ ^[A-Z] ]] && pos+=("$w")
    done
    case ${pos[n]:-} in
        DOMAIN)
            COMPREPLY=($(compgen -W "$("${xkvm[@]}" list 2>/dev/null | awk 'NR > 1 { print $1 }')" -- "$cur")) ;;
        FILE|PATH|CFG|CONFIG)
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
}
complete -F _xkvm xkvm
