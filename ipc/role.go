package ipc

// EnvRole is the environment variable with which the master marks a process it starts
// as a worker (EnvRole=RoleWorker), and by which main picks the role. It lives in ipc,
// the package both ends of the control pipe share, so that master and worker need not
// import each other.
const EnvRole = "SPINDLE_ROLE"

// RoleWorker is EnvRole's value in a worker process.
const RoleWorker = "worker"
