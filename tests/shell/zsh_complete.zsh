# Print what zsh's completion offers for each line, as a user pressing TAB would get.
# usage: zsh -f zsh_complete.zsh SCRIPT OUTFILE LINE...
# An interactive zsh runs on a pseudo-terminal (zpty) with compinit and SCRIPT
# loaded; compadd is wrapped to append every match it is given to OUTFILE,
# after a "== LINE" marker. Each step waits until the shell has done the one
# before (a marker written, the matches settled), so nothing is typed ahead:
# zsh may skip completing while input is pending.
script=$1 outfile=$2
shift 2
zmodload zsh/zpty

lines_in() { [[ -f $outfile ]] && wc -l < $outfile || print 0 }

wait_for_marker() {  # wait until OUTFILE's last line is $1
    local i
    for i in {1..300}; do
        [[ -f $outfile && $(tail -n 1 $outfile) == "$1" ]] && return 0
        sleep 0.05
    done
    return 1
}

wait_settled() {  # wait until OUTFILE grows past $1 lines, then stops growing
    local i last=-1 now
    for i in {1..200}; do
        now=$(lines_in)
        if (( now > $1 && now == last )); then
            return 0
        fi
        last=$now
        sleep 0.1
    done
    return 1
}

zpty z 'zsh -f -i'
zpty -w z "autoload -Uz compinit; compinit -u -D; source ${(q)script}"
zpty -w z 'compadd() { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi; local -a hits; builtin compadd -A hits "$@"; local r=$?; print -rl -- $hits >> '${(q)outfile}'; builtin compadd "$@"; return r; }'
for line in "$@"; do
    zpty -w z "print -r -- '== $line' >> ${(q)outfile}"
    wait_for_marker "== $line"
    before=$(lines_in)
    zpty -w -n z "$line"$'\t'
    wait_settled $before
    zpty -w z $'\C-u'
done
zpty -w z "print -r -- '== end' >> ${(q)outfile}"
wait_for_marker "== end"
zpty -d z
