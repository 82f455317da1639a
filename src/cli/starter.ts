/** The commented starter manifest that `cell init` writes. */
export const STARTER_MANIFEST = `# cell.yaml: the cells of this mesh. Run \`cell up\` in this folder to start them.
# Every instance gets PORT (a free port), CELL_NAME, CELL_INSTANCE and CELL_HOME in its environment.

# gateway:
#   port: 8080            # the HTTP gateway routes /{cell}/... to ready instances (0 = any free port)
#   hold: 10s             # a request for a cell that is restarting waits this long for it (0 = answer 503 at once)

cells:
  db:
    # A command line, run as /bin/sh -c "exec <run>" would: $PORT expands, the pid is the
    # program's own. (A line with no shell syntax but $VARS is started without the shell.)
    run: python3 -m http.server $PORT --bind 127.0.0.1
    health:
      tcp: {}             # the port accepts connections (port defaults to $PORT)
      interval: 2s

  api:
    run: node -e "require('http').createServer((q,s)=>s.end('api ok\\\\n')).listen(process.env.PORT)"
    depends_on: [db]      # starts once every db instance is healthy; paused while db is down
    # depends_on:         # the long form, for a one-shot job (restart policy on-failure or never):
    #   db: {}
    #   migrate: { condition: completed }   # starts once migrate has run and exited 0
    instances: 2          # each gets its own PORT; 0 keeps the cell in the mesh with nothing running
    health:
      http: { path: / }   # 2xx on GET http://127.0.0.1:$PORT/, from a listener of this instance's own
                          # processes (docker-proxy's for \`docker run -p $PORT:80\` is not: use exec)
      interval: 1s
      timeout: 500ms
      retries: 3          # failed probes in a row before a restart
      grace: 30s          # time allowed to become healthy after a start
    restart:
      policy: always      # always | on-failure | never
      backoff: 2s         # first restart is immediate, then 2s, 4s, 8s...
      max_backoff: 60s
      max_retries: 5      # restarts after failures in a row; one more failure marks it failed
      reset_after: 30s    # ready this long, a run's crash starts a new count
      warm: true          # a node program's restart after a crash may skip node's boot (a warm spare)
    stop:
      signal: SIGTERM     # then SIGTERM after timeout, SIGKILL after kill_after
      timeout: 5s
      kill_after: 2s
    # source: ["src/**/*.js"]   # files hashed (BLAKE3) into the version shown by \`cell status\`
    # build: npm run build      # run before start when the version changed
    # build_timeout: 10m        # a build still running then is stopped and fails
`;
