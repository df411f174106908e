output "cluster_name" {
  description = "EKS cluster name."
  value       = try(aws_eks_cluster.this.name, null)
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = try(aws_eks_cluster.this.endpoint, null)
}

output "karpenter_queue_name" {
  description = "Interruption queue (Karpenter's settings.interruptionQueue)."
  value       = try(aws_sqs_queue.karpenter.name, null)
}

output "node_role_name" {
  description = "Node IAM role (EC2NodeClass spec.role)."
  value       = try(aws_iam_role.node.name, null)
}

output "irsa_role_arns" {
  description = "IAM roles of the service accounts (the overlays' eks.amazonaws.com/role-arn)."
  value       = { for k, r in aws_iam_role.irsa : k => r.arn }
}
