# bash completion for longhaul(1): its commands, each command's options, the
# values of options that take a known set of them, and files where a command
# or option takes a file. `make install` puts it in
# $(PREFIX)/share/bash-completion/completions/longhaul. It needs nothing from
# the bash-completion package, so it also works when sourced by hand.
#
# The table below is the one list of options: tests/proc/test_install.py
# checks that every option a command's --help prints is in it, and in the
# zsh completion (completions/_longhaul), which is written out by hand.

_longhaul_commands="run serve submit ls status watch pause resume cancel set rm
logs results failures retry approve verify version help"

# The options of a command ($1), one line.
_longhaul_opts()
{
	local client="--json --url --help"
	case $1 in
	run)
		echo "--base-url --api-key-env --model --prompt --system --concurrency" \
			"--store --output --errors --progress-file --max-attempts" \
			"--connect-timeout --request-timeout --first-token-timeout" \
			"--wait-for-server --grace --sync --retry-failed --restart --quiet" \
			"--time-limit --reduce-output --help" ;;
	serve)
		echo "--listen --data-dir --config --base-url --api-key-env --concurrency" \
			"--max-jobs --grace --connect-timeout --request-timeout" \
			"--first-token-timeout --wait-for-server --sync --max-upload-mb --help" ;;
	submit) echo "--name --priority --time-limit --model --wait $client" ;;
	ls) echo "--state --limit $client" ;;
	pause) echo "--now $client" ;;
	set)
		echo "--model --base-url --api-key-env --concurrency --max-tokens" \
			"--temperature --connect-timeout --request-timeout" \
			"--first-token-timeout --max-attempts --priority $client" ;;
	logs) echo "--follow --after $client" ;;
	results) echo "-o --output --reduce $client" ;;
	status | watch | resume | cancel | rm | failures | retry) echo "$client" ;;
	approve) echo "--all --reject --note --store --job $client" ;;
	verify) echo "--store --help" ;;
	esac
}

# What follows an option ($1) of a command ($2) that takes a value:
# "file", "dir", "env", a list of words, or "any" (no suggestion). Prints
# nothing for a flag.
_longhaul_value()
{
	case $1 in
	--store | --output | --errors | --progress-file | --config | -o | --reduce-output) echo file ;;
	--data-dir) echo dir ;;
	--api-key-env) echo env ;;
	--sync) echo "normal full" ;;
	--state) echo "queued running paused completed failed cancelled timed_out" ;;
	--base-url | --model | --prompt | --system | --concurrency | --max-attempts | \
	--connect-timeout | --request-timeout | --first-token-timeout | \
	--wait-for-server | --grace | --listen | --max-jobs | --max-upload-mb | \
	--name | --priority | --time-limit | --limit | --after | --url | \
	--max-tokens | --temperature | --note | --job)
		echo any ;;
	esac
}

_longhaul()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev="" cmd="" pre="" what i
	COMPREPLY=()
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	# "--sync=full": bash splits the word at "=" when COMP_WORDBREAKS has
	# it (the default); otherwise the option is a prefix of the reply.
	if [[ $prev == "=" && $COMP_CWORD -gt 1 ]]; then
		prev=${COMP_WORDS[COMP_CWORD - 2]}
	elif [[ $cur == --*=* ]]; then
		prev=${cur%%=*}
		pre=$prev=
		cur=${cur#*=}
	fi
	for ((i = 1; i < COMP_CWORD; i++)); do
		if [[ ${COMP_WORDS[i]} != -* ]]; then
			cmd=${COMP_WORDS[i]}
			break
		fi
	done
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$_longhaul_commands --version --help" -- "$cur"))
		return 0
	fi

	if [[ $prev == -* ]] && [[ " $(_longhaul_opts "$cmd") " == *" $prev "* ]]; then
		what=$(_longhaul_value "$prev")
		case $what in
		"") ;;
		file)
			compopt -o filenames 2>/dev/null
			COMPREPLY=($(compgen -P "$pre" -f -- "$cur"))
			return 0 ;;
		dir)
			compopt -o filenames 2>/dev/null
			COMPREPLY=($(compgen -P "$pre" -d -- "$cur"))
			return 0 ;;
		env)
			COMPREPLY=($(compgen -P "$pre" -e -- "$cur"))
			return 0 ;;
		any) return 0 ;;
		*)
			COMPREPLY=($(compgen -P "$pre" -W "$what" -- "$cur"))
			return 0 ;;
		esac
	fi

	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_longhaul_opts "$cmd")" -- "$cur"))
		return 0
	fi
	case $cmd in
	run | submit | verify)
		# FILE: a batch file, a spec, records, a directory; "-" is stdin;
		# for verify, the store file.
		compopt -o filenames 2>/dev/null
		COMPREPLY=($(compgen -f -- "$cur"))
		;;
	esac
	return 0
}

complete -F _longhaul longhaul
