# Sourced by the hf:// and http:// cases (not a case itself: no cmd file here).
# start_hub [fake_hub.py options]: serves $FIX/hub on a free 127.0.0.1 port (the server
# picks it by binding port 0 and exits by itself after 60 s); stopped when the case ends.
start_hub() {
	HUB_PORT=$(python3 "$ROOT/tests/helpers/fake_hub.py" --root "$FIX/hub" --timeout 60 \
		--pid-file hub.pid --log hub.log "$@") || exit 1
	trap stop_hub EXIT
	export HF_ENDPOINT=http://127.0.0.1:$HUB_PORT SFT_CACHE=$PWD/cache SFT_HTTP_BACKOFF_MS=1
	unset HF_TOKEN
}
stop_hub() {
	[ -f hub.pid ] && kill "$(cat hub.pid)" 2>/dev/null
	rm -f hub.pid
}
