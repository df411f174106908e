variable "region" {
  description = "AWS region."
  type        = string
}

variable "name" {
  description = "Cluster name, e.g. `magento-production`."
  type        = string
}

variable "state_bucket" {
  description = "S3 bucket of the Terraform states (network and data are read from it)."
  type        = string
}

variable "public_access_cidrs" {
  description = "Networks allowed to reach the Kubernetes API."
  type        = list(string)
}

variable "namespace" {
  description = "Kubernetes namespace of Magento (the overlay's)."
  type        = string
}

variable "cluster_admin_arns" {
  description = "IAM roles with cluster-admin access entries (operators, CI's deploy role)."
  type        = list(string)
}

variable "system_node_count" {
  description = "Nodes of the system group."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

data "terraform_remote_state" "network" {
  backend = "s3"
  config = {
    bucket = var.state_bucket
    key    = "network/terraform.tfstate"
    region = var.region
  }
}

data "terraform_remote_state" "data" {
  backend = "s3"
  config = {
    bucket = var.state_bucket
    key    = "data/terraform.tfstate"
    region = var.region
  }
}

module "compute" {
  source = "../../modules/compute"

  name                    = var.name
  private_subnet_ids      = data.terraform_remote_state.network.outputs.private_subnet_ids
  nodes_security_group_id = data.terraform_remote_state.network.outputs.nodes_security_group_id
  media_policy_arn        = data.terraform_remote_state.data.outputs.media_policy_arn
  secrets_kms_key_arn     = data.terraform_remote_state.data.outputs.kms_key_arn
  cluster_admin_arns      = var.cluster_admin_arns
  public_access_cidrs     = var.public_access_cidrs
  system_node_count       = var.system_node_count
  namespace               = var.namespace
  tags                    = var.tags
}

output "cluster_name" {
  description = "EKS cluster name."
  value       = module.compute.cluster_name
}

output "karpenter_queue_name" {
  description = "Karpenter interruption queue."
  value       = module.compute.karpenter_queue_name
}

output "irsa_role_arns" {
  description = "IAM roles for the overlays' service accounts."
  value       = module.compute.irsa_role_arns
}
