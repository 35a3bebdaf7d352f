//! Every CRI pod metric we serve: cAdvisor's names and help texts as CRI-O serves
//! them (the set cri-tools' conformance test expects), grouped as CRI-O's
//! `included_pod_metrics` groups them. Each has the base labels
//! (`id, image, namespace, pod, container`) and, after them, its own.

use protocols::cri::MetricType;

/// A group of `[crio.stats] included_pod_metrics` (CRI-O's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// `container_last_seen`: always served.
    Always,
    Cpu,
    Memory,
    Oom,
    Network,
    Disk,
    DiskIo,
    Hugetlb,
    Process,
    Spec,
    Pressure,
}

impl Group {
    pub const CONFIGURABLE: [Group; 10] = [
        Group::Cpu,
        Group::Memory,
        Group::Oom,
        Group::Network,
        Group::Disk,
        Group::DiskIo,
        Group::Hugetlb,
        Group::Process,
        Group::Spec,
        Group::Pressure,
    ];

    /// The config name (`diskIO`, ...).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Group::Always => "",
            Group::Cpu => "cpu",
            Group::Memory => "memory",
            Group::Oom => "oom",
            Group::Network => "network",
            Group::Disk => "disk",
            Group::DiskIo => "diskIO",
            Group::Hugetlb => "hugetlb",
            Group::Process => "process",
            Group::Spec => "spec",
            Group::Pressure => "pressure",
        }
    }
}

/// One metric: name, help, type, group and the labels after the base ones.
#[derive(Debug, Clone, Copy)]
pub(super) struct Def {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub group: Group,
    pub extra_labels: &'static [&'static str],
}

/// The labels every metric starts with, in CRI-O's order.
pub(super) const BASE_LABELS: [&str; 5] = ["id", "image", "namespace", "pod", "container"];

const C: MetricType = MetricType::Counter;
const G: MetricType = MetricType::Gauge;

const fn def(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    group: Group,
    extra_labels: &'static [&'static str],
) -> Def {
    Def {
        name,
        help,
        kind,
        group,
        extra_labels,
    }
}

#[rustfmt::skip]
pub(super) const METRICS: &[Def] = &[
    def("container_last_seen", "Last time a container was seen by the exporter", G, Group::Always, &[]),
    // cpu
    def("container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", C, Group::Cpu, &[]),
    def("container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", C, Group::Cpu, &[]),
    def("container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", C, Group::Cpu, &["cpu"]),
    def("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", C, Group::Cpu, &[]),
    def("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", C, Group::Cpu, &[]),
    def("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", C, Group::Cpu, &[]),
    // memory
    def("container_memory_cache", "Number of bytes of page cache memory.", G, Group::Memory, &[]),
    def("container_memory_rss", "Size of RSS in bytes.", G, Group::Memory, &[]),
    def("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", G, Group::Memory, &[]),
    def("container_memory_mapped_file", "Size of memory mapped files in bytes.", G, Group::Memory, &[]),
    def("container_memory_swap", "Container swap usage in bytes.", G, Group::Memory, &[]),
    def("container_memory_failcnt", "Number of memory usage hits limits", C, Group::Memory, &[]),
    def("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", G, Group::Memory, &[]),
    def("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", G, Group::Memory, &[]),
    def("container_memory_working_set_bytes", "Current working set in bytes.", G, Group::Memory, &[]),
    def("container_memory_failures_total", "Cumulative count of memory allocation failures.", C, Group::Memory, &["failure_type", "scope"]),
    // oom
    def("container_oom_events_total", "Count of out of memory events observed for the container", C, Group::Oom, &[]),
    // network (pod level)
    def("container_network_receive_bytes_total", "Cumulative count of bytes received", C, Group::Network, &["interface"]),
    def("container_network_receive_packets_total", "Cumulative count of packets received", C, Group::Network, &["interface"]),
    def("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", C, Group::Network, &["interface"]),
    def("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", C, Group::Network, &["interface"]),
    def("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", C, Group::Network, &["interface"]),
    def("container_network_transmit_packets_total", "Cumulative count of packets transmitted", C, Group::Network, &["interface"]),
    def("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", C, Group::Network, &["interface"]),
    def("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", C, Group::Network, &["interface"]),
    // disk
    def("container_fs_inodes_free", "Number of free inodes.", G, Group::Disk, &[]),
    def("container_fs_inodes_total", "Total number of inodes.", G, Group::Disk, &[]),
    def("container_fs_limit_bytes", "Filesystem limit in bytes.", G, Group::Disk, &[]),
    def("container_fs_usage_bytes", "Current filesystem usage in bytes.", G, Group::Disk, &[]),
    // diskIO
    def("container_fs_reads_bytes_total", "Cumulative count of bytes read", C, Group::DiskIo, &["device"]),
    def("container_fs_reads_total", "Cumulative count of reads completed", C, Group::DiskIo, &["device"]),
    def("container_fs_writes_bytes_total", "Cumulative count of bytes written", C, Group::DiskIo, &["device"]),
    def("container_fs_writes_total", "Cumulative count of writes completed", C, Group::DiskIo, &["device"]),
    def("container_blkio_device_usage_total", "Blkio Device bytes usage", C, Group::DiskIo, &["device", "major", "minor", "operation"]),
    // hugetlb
    def("container_hugetlb_usage_bytes", "Current hugepage usage", G, Group::Hugetlb, &["pagesize"]),
    def("container_hugetlb_max_usage_bytes", "Maximum hugepage usages recorded", G, Group::Hugetlb, &["pagesize"]),
    // process
    def("container_file_descriptors", "Number of open file descriptors for the container.", G, Group::Process, &[]),
    def("container_processes", "Number of processes running inside the container.", G, Group::Process, &[]),
    def("container_sockets", "Number of open sockets for the container.", G, Group::Process, &[]),
    def("container_threads", "Number of threads running inside the container", G, Group::Process, &[]),
    def("container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", G, Group::Process, &[]),
    def("container_ulimits_soft", "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", G, Group::Process, &["ulimit"]),
    // spec
    def("container_spec_cpu_period", "CPU period of the container.", G, Group::Spec, &[]),
    def("container_spec_cpu_shares", "CPU share of the container.", G, Group::Spec, &[]),
    def("container_spec_cpu_quota", "CPU quota of the container.", G, Group::Spec, &[]),
    def("container_spec_memory_limit_bytes", "Memory limit for the container in bytes.", G, Group::Spec, &[]),
    def("container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", G, Group::Spec, &[]),
    def("container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", G, Group::Spec, &[]),
    def("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", G, Group::Spec, &[]),
    // pressure (cgroup v2 PSI)
    def("container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", C, Group::Pressure, &[]),
    def("container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", C, Group::Pressure, &[]),
    def("container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", C, Group::Pressure, &[]),
    def("container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", C, Group::Pressure, &[]),
    def("container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", C, Group::Pressure, &[]),
    def("container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", C, Group::Pressure, &[]),
];

/// The definition of `name`.
pub(super) fn lookup(name: &str) -> Option<&'static Def> {
    METRICS.iter().find(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_cri_tools_56_names_each_once() {
        assert_eq!(METRICS.len(), 56);
        let mut names: Vec<_> = METRICS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 56);
        assert!(METRICS.iter().all(|d| !d.help.is_empty()));
    }
}
