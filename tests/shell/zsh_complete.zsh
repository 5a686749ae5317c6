# Print what zsh's completion offers for each line, as a user pressing TAB would get.
# usage: zsh -f zsh_complete.zsh SCRIPT OUTFILE LINE...
# An interactive zsh runs on a pseudo-terminal (zpty) with compinit and SCRIPT
# loaded; compadd is wrapped to append every match it is given to OUTFILE,
# after a "== LINE" marker, then TAB is typed after LINE.
script=$1 outfile=$2
shift 2
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z "autoload -Uz compinit; compinit -u -D; source ${(q)script}"
zpty -w z 'compadd() { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi; local -a hits; builtin compadd -A hits "$@"; local r=$?; print -rl -- $hits >> '${(q)outfile}'; builtin compadd "$@"; return r; }'
for line in "$@"; do
    zpty -w z "print -r -- '== $line' >> ${(q)outfile}"
    zpty -w -n z "$line"$'\t'
    sleep 0.3
    zpty -w z $'\C-u'
done
zpty -w z "print -r -- '== end' >> ${(q)outfile}"
for i in {1..100}; do
    grep -q '^== end' $outfile 2>/dev/null && break
    sleep 0.1
done
zpty -d z
